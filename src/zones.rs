//! Zone inventory and the split of replicas over zones.
//!
//! Pure: the controller feeds in Nodes and observed ReplicaSets; nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::api::ZoneStatus;
use crate::labels;

/// Where a group of pods is placed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Zone {
    /// A value of the node label topology.kubernetes.io/zone.
    Named(String),
    /// The cluster has no zone labels at all (plain kind): one implicit zone, spread by hostname.
    Anywhere,
}

impl Zone {
    /// Name as shown in status.
    pub fn name(&self) -> &str {
        match self {
            Self::Named(name) => name,
            Self::Anywhere => "any",
        }
    }

    /// A DNS-label-safe form for object names: lowercase, `[a-z0-9-]`, at most 30 characters.
    pub fn slug(&self) -> String {
        let mut slug: String = self
            .name()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .take(30)
            .collect();
        while slug.ends_with('-') {
            slug.pop();
        }
        if slug.is_empty() { "zone".to_owned() } else { slug }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A zone and whether pods can be placed there now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneHealth {
    pub zone: Zone,
    /// False when the zone has no Ready, schedulable node (or its pods are stuck Pending).
    pub healthy: bool,
}

/// The zones of the cluster, from its Nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneInventory {
    /// Zone name → has at least one Ready, schedulable node.
    zones: BTreeMap<String, bool>,
    /// Some node carries no zone label.
    unlabelled_nodes: bool,
}

impl ZoneInventory {
    /// Builds the inventory from Nodes.
    pub fn from_nodes<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        let mut inventory = Self::default();
        for node in nodes {
            let zone = node.metadata.labels.as_ref().and_then(|l| l.get(labels::TOPOLOGY_ZONE));
            let usable = node_is_usable(node);
            match zone {
                Some(zone) => {
                    let healthy = inventory.zones.entry(zone.clone()).or_insert(false);
                    *healthy |= usable;
                }
                None => inventory.unlabelled_nodes |= usable,
            }
        }
        inventory
    }

    /// An inventory where each named zone is healthy (for `render --zones`).
    pub fn healthy_zones<S: AsRef<str>>(names: &[S]) -> Self {
        Self { zones: names.iter().map(|n| (n.as_ref().to_owned(), true)).collect(), unlabelled_nodes: false }
    }

    /// Remembers a zone the CourseService already runs in (it has ReplicaSets there): when all
    /// its nodes are deleted it is lost, not forgotten, so its share comes back when nodes
    /// return. To retire a zone for good, list the remaining ones in `spec.zones`.
    /// `slug` is the zone label of the ReplicaSet; a zone the nodes name differently but with
    /// the same slug is the same zone.
    pub fn remember(&mut self, slug: &str) {
        if !self.zones.keys().any(|z| Zone::Named(z.clone()).slug() == slug) {
            self.zones.insert(slug.to_owned(), false);
        }
    }

    /// Marks a zone lost (e.g. its pods have been Pending too long).
    pub fn mark_lost(&mut self, zone: &str) {
        if let Some(healthy) = self.zones.get_mut(zone) {
            *healthy = false;
        }
    }

    /// The zones a CourseService runs in: `spec.zones` when given (a named zone the cluster does
    /// not have is lost), else every zone the cluster has, else one implicit zone.
    pub fn for_spec(&self, wanted: &[String]) -> Vec<ZoneHealth> {
        if !wanted.is_empty() {
            let mut zones: Vec<ZoneHealth> = wanted
                .iter()
                .map(|name| ZoneHealth {
                    zone: Zone::Named(name.clone()),
                    healthy: self.zones.get(name).copied().unwrap_or(false),
                })
                .collect();
            zones.sort_by(|a, b| a.zone.cmp(&b.zone));
            zones.dedup_by(|a, b| a.zone == b.zone);
            return zones;
        }
        if self.zones.is_empty() {
            return vec![ZoneHealth { zone: Zone::Anywhere, healthy: true }];
        }
        self.zones
            .iter()
            .map(|(name, healthy)| ZoneHealth { zone: Zone::Named(name.clone()), healthy: *healthy })
            .collect()
    }
}

/// Ready and not cordoned.
fn node_is_usable(node: &Node) -> bool {
    let schedulable = !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| conds.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    schedulable && ready
}

/// Whether pods placed by `node_selector` and `tolerations` may be scheduled on `node`: it
/// carries every selected label and each of its NoSchedule/NoExecute taints is tolerated
/// (PreferNoSchedule only steers the scheduler). A zone counts for a CourseService only
/// through such nodes: a tainted node pool staying Ready in a zone must not hide that the
/// nodes its pods can use there are gone.
pub fn admits(node: &Node, node_selector: &BTreeMap<String, String>, tolerations: &[Toleration]) -> bool {
    let node_labels = node.metadata.labels.as_ref();
    let selected = node_selector.iter().all(|(key, value)| node_labels.and_then(|l| l.get(key)) == Some(value));
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    selected
        && taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)))
}

/// The scheduler's rule: an empty key with `Exists` tolerates every taint; an empty effect
/// every effect; `Exists` any value, `Equal` (the default) the same value.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let exists = toleration.operator.as_deref() == Some("Exists");
    let key = match toleration.key.as_deref() {
        None | Some("") => exists,
        Some(key) => key == taint.key,
    };
    let effect = toleration.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let value = exists || toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default();
    key && effect && value
}

/// A pod of one CourseService that the scheduler reports it cannot place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnschedulablePod {
    /// Zone slug of its ReplicaSet (label `microcourses.io/zone`).
    pub zone: String,
    /// When the scheduler set `PodScheduled=False` (reason Unschedulable).
    pub since: Timestamp,
}

/// When pods that cannot be scheduled make a zone lost, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnschedulablePolicy {
    /// A zone whose pods stay unschedulable this long is lost (it has nodes, but they are full,
    /// tainted or otherwise refuse the pods): its share moves to the other zones.
    pub after: Duration,
    /// A zone lost that way gets its share back after this long, to try again; pods that still
    /// cannot be placed make it lost again after `after`.
    pub retry_after: Duration,
}

impl Default for UnschedulablePolicy {
    fn default() -> Self {
        Self { after: Duration::from_secs(300), retry_after: Duration::from_secs(600) }
    }
}

/// Zones lost because the CourseService's pods could not be scheduled there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnschedulableZones {
    /// Zone name → when it was declared lost.
    pub since: BTreeMap<String, Timestamp>,
    /// When the answer can next change without any event (a threshold or retry deadline).
    pub recheck_in: Option<Duration>,
}

impl UnschedulableZones {
    /// Marks the zones lost in `zones`.
    pub fn apply(&self, zones: &mut [ZoneHealth]) {
        for zone in zones.iter_mut().filter(|z| self.since.contains_key(z.zone.name())) {
            zone.healthy = false;
        }
    }
}

/// Decides which of `zones` are lost because pods stay unschedulable there. `previous` is the
/// last published status (it remembers zones lost earlier, whose pods are gone since their
/// share moved away); `pods` are the CourseService's unschedulable pods now.
pub fn unschedulable_zones(
    zones: &[ZoneHealth],
    previous: &[ZoneStatus],
    pods: &[UnschedulablePod],
    now: Timestamp,
    policy: UnschedulablePolicy,
) -> UnschedulableZones {
    let mut result = UnschedulableZones::default();
    let mut recheck = |at: Timestamp| {
        let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
        result.recheck_in = Some(result.recheck_in.map_or(wait, |r| r.min(wait)));
    };
    let mut lost = BTreeMap::new();
    for zone in zones.iter().filter(|z| matches!(z.zone, Zone::Named(_))) {
        let earlier = previous
            .iter()
            .find(|s| s.name == zone.zone.name())
            .and_then(|s| s.unschedulable_since.as_deref()?.parse::<Timestamp>().ok());
        if let Some(since) = earlier {
            let retry_at = since.saturating_add(signed(policy.retry_after)).unwrap_or(since);
            if now < retry_at {
                lost.insert(zone.zone.name().to_owned(), since);
                recheck(retry_at);
                continue;
            }
        }
        let slug = zone.zone.slug();
        let Some(oldest) = pods.iter().filter(|p| p.zone == slug).map(|p| p.since).min() else {
            continue;
        };
        let lost_at = oldest.saturating_add(signed(policy.after)).unwrap_or(oldest);
        if now >= lost_at {
            lost.insert(zone.zone.name().to_owned(), now);
            recheck(now.saturating_add(signed(policy.retry_after)).unwrap_or(now));
        } else {
            recheck(lost_at);
        }
    }
    result.since = lost;
    result
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

/// Replicas per zone.
pub type ZoneSplit = Vec<(Zone, i32)>;

/// Splits `total` replicas evenly over the healthy zones; lost zones get none.
///
/// The remainder goes to consecutive zones starting at an offset derived from `seed` (the
/// CourseService name), so a fleet of services does not pile its extra pods onto the first
/// zone. When no zone is healthy, the split covers every zone: an inventory glitch must never
/// scale an application to nothing.
pub fn split(total: i32, zones: &[ZoneHealth], seed: &str) -> ZoneSplit {
    let total = total.max(0);
    let any_healthy = zones.iter().any(|z| z.healthy);
    let eligible: Vec<usize> = (0..zones.len()).filter(|&i| zones[i].healthy || !any_healthy).collect();
    let mut result: ZoneSplit = zones.iter().map(|z| (z.zone.clone(), 0)).collect();
    let Ok(n) = i32::try_from(eligible.len()) else {
        return result;
    };
    if n == 0 {
        return result;
    }
    let base = total / n;
    let remainder = total % n;
    let offset = seed_offset(seed, eligible.len());
    for (position, &index) in eligible.iter().enumerate() {
        let rotated = (position + eligible.len() - offset) % eligible.len();
        let extra = i32::from(i32::try_from(rotated).is_ok_and(|r| r < remainder));
        result[index].1 = base + extra;
    }
    result
}

/// Splits `total` over the same zones as [`split`] so that, added to `beside` (another
/// revision's split), every eligible zone's sum is as even as possible: a canary's stable pods
/// fill the zones its new pods left short, instead of doubling up where the new ones went.
/// Ties go in the seed's rotation order, like `split`.
pub fn split_beside(total: i32, zones: &[ZoneHealth], seed: &str, beside: &ZoneSplit) -> ZoneSplit {
    let total = total.max(0);
    let any_healthy = zones.iter().any(|z| z.healthy);
    let eligible: Vec<usize> = (0..zones.len()).filter(|&i| zones[i].healthy || !any_healthy).collect();
    let mut result: ZoneSplit = zones.iter().map(|z| (z.zone.clone(), 0)).collect();
    if eligible.is_empty() {
        return result;
    }
    let offset = seed_offset(seed, eligible.len());
    let order: Vec<usize> = (0..eligible.len()).map(|k| eligible[(k + offset) % eligible.len()]).collect();
    let other = |i: usize| beside.iter().find(|(z, _)| *z == zones[i].zone).map_or(0, |(_, n)| (*n).max(0));
    // Level the lowest zones up to the next height until `total` is placed: O(zones²) rounds
    // of bulk fills, not one pass per pod.
    let mut left = total;
    while left > 0 {
        let height = |i: usize| other(i) + result[i].1;
        let low = order.iter().map(|&i| height(i)).min().unwrap_or(0);
        let lowest: Vec<usize> = order.iter().copied().filter(|&i| height(i) == low).collect();
        let next = order.iter().map(|&i| height(i)).filter(|&h| h > low).min();
        let count = i32::try_from(lowest.len()).unwrap_or(i32::MAX);
        // raise every lowest zone to the next height, or share what is left among them
        let per_zone = next.map_or(left / count, |n| (n - low).min(left / count));
        if per_zone == 0 {
            for &i in lowest.iter().take(usize::try_from(left).unwrap_or(0)) {
                result[i].1 += 1;
            }
            break;
        }
        for &i in &lowest {
            result[i].1 += per_zone;
        }
        left -= per_zone * count;
    }
    result
}

/// A revision's per-zone sizes when it must hold `total` beside another revision's split,
/// changing only what must change: starting from `current` (its replicas now), pods are removed
/// where the two revisions together are highest and added where they are lowest, never moved
/// between healthy zones (a move would cost Ready pods while the other revision is still
/// coming up). A lost zone's pods are let go and replaced in the others.
pub fn resize_beside(
    total: i32,
    zones: &[ZoneHealth],
    seed: &str,
    current: &ZoneSplit,
    beside: &ZoneSplit,
) -> ZoneSplit {
    let total = total.max(0);
    let any_healthy = zones.iter().any(|z| z.healthy);
    let eligible = |z: &ZoneHealth| z.healthy || !any_healthy;
    let count_in =
        |split: &ZoneSplit, zone: &Zone| split.iter().find(|(z, _)| z == zone).map_or(0, |(_, n)| (*n).max(0));
    let mut result: ZoneSplit =
        zones.iter().map(|z| (z.zone.clone(), if eligible(z) { count_in(current, &z.zone) } else { 0 })).collect();
    let have: i32 = result.iter().map(|(_, n)| n).sum();
    if have < total {
        let combined: ZoneSplit = result.iter().map(|(z, n)| (z.clone(), n + count_in(beside, z))).collect();
        for ((_, n), (_, add)) in result.iter_mut().zip(split_beside(total - have, zones, seed, &combined)) {
            *n += add;
        }
    }
    for _ in total..have {
        // the highest zone (both revisions) that still has a pod of this one
        let highest = (0..result.len())
            .filter(|&i| result[i].1 > 0)
            .max_by_key(|&i| (count_in(beside, &result[i].0) + result[i].1, result[i].1));
        match highest {
            Some(i) => result[i].1 -= 1,
            None => break,
        }
    }
    result
}

fn seed_offset(seed: &str, modulus: usize) -> usize {
    let digest = Sha256::digest(seed.as_bytes());
    let value =
        u64::from_be_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]]);
    usize::try_from(value % modulus as u64).unwrap_or(0)
}

/// What runs in one zone now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneObserved {
    /// Replicas the zone's ReplicaSets are asked for.
    pub replicas: i32,
    /// Of them, Ready.
    pub ready: i32,
}

/// Paces a new split against what runs now, so moving replicas between zones never takes the
/// Ready count below `total - max_unavailable`.
///
/// Zones that grow get their share at once. Zones that shrink first drop pods that are not
/// Ready (the ReplicaSet controller deletes those first), then Ready ones only while the
/// Ready pods elsewhere cover the budget. Called on every reconcile, it converges on `split`
/// as the growing zones' pods become Ready.
pub fn pace(split: &ZoneSplit, observed: &BTreeMap<Zone, ZoneObserved>, max_unavailable: i32) -> ZoneSplit {
    let total: i32 = split.iter().map(|(_, n)| n).sum();
    let total_ready: i32 = observed.values().map(|o| o.ready.max(0)).sum();
    let floor = (total - max_unavailable.max(0)).max(0);
    let mut budget = (total_ready - floor).max(0);
    split
        .iter()
        .map(|(zone, share)| {
            let current = observed.get(zone).copied().unwrap_or_default();
            if *share >= current.replicas {
                return (zone.clone(), *share);
            }
            let ready = current.ready.clamp(0, current.replicas);
            let not_ready = current.replicas - ready;
            let mut target = (current.replicas - not_ready).max(*share);
            let take = (target - share).min(budget);
            target -= take;
            budget -= take;
            (zone.clone(), target)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tainted(labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n", "labels": labels.iter().copied().collect::<BTreeMap<_, _>>()},
            "spec": {"taints": taints.iter().map(|(key, value, effect)| serde_json::json!({
                "key": key, "value": value, "effect": effect,
            })).collect::<Vec<_>>()},
        }))
        .unwrap_or_default()
    }

    fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Toleration {
            key: some(key),
            operator: some(operator),
            value: some(value),
            effect: some(effect),
            ..Toleration::default()
        }
    }

    #[test]
    fn a_node_admits_pods_that_select_its_labels_and_tolerate_its_scheduling_taints() {
        let pool = [("kubernetes.azure.com/agentpool", "courses")];
        let none = BTreeMap::new();
        let select_pool: BTreeMap<String, String> = pool.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        assert!(admits(&tainted(&pool, &[]), &none, &[]), "no settings: any untainted node");
        assert!(admits(&tainted(&pool, &[]), &select_pool, &[]));
        assert!(!admits(&tainted(&[], &[]), &select_pool, &[]), "selected label missing");
        let kwok = tainted(&[], &[("kwok.x-k8s.io/node", "fake", "NoSchedule")]);
        assert!(!admits(&kwok, &none, &[]), "an untolerated NoSchedule taint");
        assert!(admits(&kwok, &none, &[toleration("kwok.x-k8s.io/node", "Exists", "", "NoSchedule")]));
        assert!(admits(&kwok, &none, &[toleration("kwok.x-k8s.io/node", "Equal", "fake", "")]), "empty effect: all");
        assert!(
            admits(&kwok, &none, &[toleration("kwok.x-k8s.io/node", "", "fake", "NoSchedule")]),
            "Equal by default"
        );
        assert!(!admits(&kwok, &none, &[toleration("kwok.x-k8s.io/node", "Equal", "real", "NoSchedule")]), "value");
        assert!(!admits(&kwok, &none, &[toleration("kwok.x-k8s.io/node", "Exists", "", "NoExecute")]), "effect");
        assert!(!admits(&kwok, &none, &[toleration("other", "Exists", "", "")]), "key");
        assert!(admits(&kwok, &none, &[toleration("", "Exists", "", "")]), "empty key with Exists: every taint");
        let soft = tainted(&[], &[("spot", "true", "PreferNoSchedule")]);
        assert!(admits(&soft, &none, &[]), "PreferNoSchedule does not keep pods off");
    }

    fn zones(spec: &[(&str, bool)]) -> Vec<ZoneHealth> {
        spec.iter().map(|(n, h)| ZoneHealth { zone: Zone::Named((*n).to_owned()), healthy: *h }).collect()
    }

    fn counts(split: &ZoneSplit) -> Vec<i32> {
        split.iter().map(|(_, n)| *n).collect()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn policy() -> UnschedulablePolicy {
        UnschedulablePolicy { after: Duration::from_secs(60), retry_after: Duration::from_secs(300) }
    }

    fn pending(zone: &str, since: i64) -> UnschedulablePod {
        UnschedulablePod { zone: zone.into(), since: at(since) }
    }

    fn lost_status(zone: &str, since: i64) -> ZoneStatus {
        ZoneStatus {
            name: zone.into(),
            lost: true,
            unschedulable_since: Some(at(since).to_string()),
            ..ZoneStatus::default()
        }
    }

    #[test]
    fn pods_unschedulable_past_the_threshold_make_their_zone_lost() {
        let z = zones(&[("zone-a", true), ("zone-b", true), ("zone-c", true)]);
        let pods = [pending("zone-c", 0), pending("zone-c", 30)];
        let early = unschedulable_zones(&z, &[], &pods, at(59), policy());
        assert!(early.since.is_empty());
        assert_eq!(early.recheck_in, Some(Duration::from_secs(1)), "looks again when the oldest pod crosses it");
        let late = unschedulable_zones(&z, &[], &pods, at(60), policy());
        assert_eq!(late.since.into_iter().collect::<Vec<_>>(), vec![("zone-c".to_owned(), at(60))]);
        assert_eq!(late.recheck_in, Some(Duration::from_secs(300)));
    }

    #[test]
    fn a_zone_lost_to_unschedulable_pods_stays_lost_until_the_retry_then_gets_its_share_back() {
        let z = zones(&[("zone-a", true), ("zone-c", true)]);
        let previous = [lost_status("zone-c", 100)];
        // Its pods are gone (the share moved away): the zone stays lost until the retry.
        let held = unschedulable_zones(&z, &previous, &[], at(399), policy());
        assert_eq!(held.since.get("zone-c"), Some(&at(100)));
        assert_eq!(held.recheck_in, Some(Duration::from_secs(1)));
        let retried = unschedulable_zones(&z, &previous, &[], at(400), policy());
        assert!(retried.since.is_empty());
        // Pods that are unschedulable again after the retry make it lost again, anew.
        let again = unschedulable_zones(&z, &previous, &[pending("zone-c", 400)], at(460), policy());
        assert_eq!(again.since.get("zone-c"), Some(&at(460)));
    }

    #[test]
    fn marking_lost_zones_only_touches_the_named_ones() {
        let mut z = zones(&[("zone-a", true), ("zone-b", true)]);
        let lost = UnschedulableZones { since: [("zone-b".to_owned(), at(0))].into(), recheck_in: None };
        lost.apply(&mut z);
        assert_eq!(z, zones(&[("zone-a", true), ("zone-b", false)]));
    }

    #[test]
    fn six_replicas_over_three_zones_are_two_each() {
        let s = split(6, &zones(&[("a", true), ("b", true), ("c", true)]), "catalog");
        assert_eq!(counts(&s), vec![2, 2, 2]);
    }

    #[test]
    fn zone_loss_moves_replicas_to_healthy_zones() {
        let s = split(6, &zones(&[("a", false), ("b", true), ("c", true)]), "catalog");
        assert_eq!(counts(&s), vec![0, 3, 3]);
    }

    #[test]
    fn remainder_placement_is_deterministic_and_depends_on_the_name() {
        let z = zones(&[("a", true), ("b", true), ("c", true)]);
        assert_eq!(split(7, &z, "catalog"), split(7, &z, "catalog"));
        let firsts: std::collections::BTreeSet<Vec<i32>> =
            (0..20).map(|i| counts(&split(7, &z, &format!("svc-{i}")))).collect();
        assert!(firsts.len() > 1, "every service put its extra pod in the same zone: {firsts:?}");
    }

    #[test]
    fn no_healthy_zone_keeps_the_split_over_all_zones() {
        let s = split(4, &zones(&[("a", false), ("b", false)]), "x");
        assert_eq!(counts(&s).iter().sum::<i32>(), 4);
    }

    #[test]
    fn spec_zones_missing_from_the_cluster_are_lost() {
        let inventory = ZoneInventory::healthy_zones(&["a", "b"]);
        let z = inventory.for_spec(&["a".into(), "z".into()]);
        assert_eq!(z, zones(&[("a", true), ("z", false)]));
    }

    #[test]
    fn cluster_without_zone_labels_has_one_implicit_zone() {
        let z = ZoneInventory::default().for_spec(&[]);
        assert_eq!(z, vec![ZoneHealth { zone: Zone::Anywhere, healthy: true }]);
    }

    #[test]
    fn a_zone_whose_nodes_are_gone_is_lost_not_forgotten() {
        let mut inventory = ZoneInventory::healthy_zones(&["zone-b", "zone-c"]);
        inventory.remember("zone-a");
        inventory.remember("zone-b");
        assert_eq!(inventory.for_spec(&[]), zones(&[("zone-a", false), ("zone-b", true), ("zone-c", true)]));
    }

    #[test]
    fn slug_is_dns_safe() {
        assert_eq!(Zone::Named("East_US2.1".into()).slug(), "east-us2-1");
        assert_eq!(Zone::Anywhere.slug(), "any");
    }

    #[test]
    fn pace_keeps_ready_pods_until_the_new_zone_is_ready() {
        // zone a came back: share 2/2/2, but b and c still run 3 Ready each, a has nothing Ready.
        let target = vec![(Zone::Named("a".into()), 2), (Zone::Named("b".into()), 2), (Zone::Named("c".into()), 2)];
        let observed = BTreeMap::from([
            (Zone::Named("a".into()), ZoneObserved { replicas: 0, ready: 0 }),
            (Zone::Named("b".into()), ZoneObserved { replicas: 3, ready: 3 }),
            (Zone::Named("c".into()), ZoneObserved { replicas: 3, ready: 3 }),
        ]);
        // 6 Ready, floor 5: one Ready pod may go.
        assert_eq!(counts(&pace(&target, &observed, 1)), vec![2, 2, 3]);
        let all_ready = BTreeMap::from([
            (Zone::Named("a".into()), ZoneObserved { replicas: 2, ready: 2 }),
            (Zone::Named("b".into()), ZoneObserved { replicas: 2, ready: 2 }),
            (Zone::Named("c".into()), ZoneObserved { replicas: 3, ready: 3 }),
        ]);
        assert_eq!(counts(&pace(&target, &all_ready, 1)), vec![2, 2, 2]);
    }

    fn zone_list() -> impl Strategy<Value = Vec<ZoneHealth>> {
        prop::collection::vec(any::<bool>(), 1..6).prop_map(|flags| {
            flags
                .into_iter()
                .enumerate()
                .map(|(i, healthy)| ZoneHealth { zone: Zone::Named(format!("zone-{i}")), healthy })
                .collect()
        })
    }

    #[test]
    fn a_canary_of_two_in_three_zones_leaves_its_stable_pod_in_the_third() {
        let zones: Vec<ZoneHealth> = ["zone-a", "zone-b", "zone-c"]
            .iter()
            .map(|z| ZoneHealth { zone: Zone::Named((*z).into()), healthy: true })
            .collect();
        for seed in ["courses", "catalog", "svc", "x"] {
            let new = split(2, &zones, seed);
            let stable = split_beside(1, &zones, seed, &new);
            // from three stable pods, one per zone, the canary's two take two zones' places
            let shrunk = resize_beside(1, &zones, seed, &split(3, &zones, seed), &new);
            assert_eq!(shrunk, stable, "{seed}");
            let per_zone: Vec<i32> = new.iter().zip(&stable).map(|((_, a), (_, b))| a + b).collect();
            assert_eq!(per_zone, [1, 1, 1], "{seed}: new {new:?} stable {stable:?}");
        }
    }

    proptest! {
        #[test]
        fn split_sums_to_total_and_is_even(total in 0i32..2000, zones in zone_list(), seed in "[a-z]{1,12}") {
            let s = split(total, &zones, &seed);
            prop_assert_eq!(s.iter().map(|(_, n)| n).sum::<i32>(), total);
            let any_healthy = zones.iter().any(|z| z.healthy);
            let eligible: Vec<i32> = s.iter().zip(&zones).filter(|(_, z)| z.healthy || !any_healthy).map(|((_, n), _)| *n).collect();
            let (min, max) = (eligible.iter().min().copied().unwrap_or(0), eligible.iter().max().copied().unwrap_or(0));
            prop_assert!(max - min <= 1, "uneven split {:?}", s);
            if any_healthy {
                for ((_, n), z) in s.iter().zip(&zones) {
                    prop_assert!(z.healthy || *n == 0, "lost zone got {} pods", n);
                }
            }
        }

        #[test]
        fn split_beside_sums_to_total_and_levels_the_zones(
            total in 0i32..500,
            other in 0i32..500,
            zones in zone_list(),
            seed in "[a-z]{1,12}",
        ) {
            let beside = split(other, &zones, &seed);
            let s = split_beside(total, &zones, &seed, &beside);
            prop_assert_eq!(s.iter().map(|(_, n)| n).sum::<i32>(), if zones.is_empty() { 0 } else { total });
            let any_healthy = zones.iter().any(|z| z.healthy);
            let sums: Vec<i32> = s.iter().zip(&beside).zip(&zones)
                .filter(|(_, z)| z.healthy || !any_healthy)
                .map(|(((_, a), (_, b)), _)| a + b)
                .collect();
            let (min, max) = (sums.iter().min().copied().unwrap_or(0), sums.iter().max().copied().unwrap_or(0));
            // beside is itself even (split), so together they are within one pod
            prop_assert!(max - min <= 1, "uneven zones {:?} beside {:?}", s, beside);
            if any_healthy {
                for ((_, n), z) in s.iter().zip(&zones) {
                    prop_assert!(z.healthy || *n == 0, "lost zone got {} pods", n);
                }
            }
        }

        #[test]
        fn resize_beside_sums_to_total_and_never_moves_pods_between_healthy_zones(
            total in 0i32..200,
            now in prop::collection::vec(0i32..60, 6),
            other in 0i32..200,
            zones in zone_list(),
            seed in "[a-z]{1,12}",
        ) {
            let current: ZoneSplit = zones.iter().zip(&now).map(|(z, n)| (z.zone.clone(), *n)).collect();
            let beside = split(other, &zones, &seed);
            let r = resize_beside(total, &zones, &seed, &current, &beside);
            if !zones.is_empty() {
                prop_assert_eq!(r.iter().map(|(_, n)| n).sum::<i32>(), total);
            }
            let healthy: Vec<(i32, i32)> = r.iter().zip(&current).zip(&zones)
                .filter(|(_, z)| z.healthy)
                .map(|(((_, after), (_, before)), _)| (*after, *before))
                .collect();
            let grew = healthy.iter().any(|(a, b)| a > b);
            let shrank = healthy.iter().any(|(a, b)| a < b);
            prop_assert!(!(grew && shrank), "pods moved: {:?} -> {:?}", current, r);
        }

        #[test]
        fn pace_never_drops_ready_pods_below_the_budget(
            total in 0i32..60,
            zones in zone_list(),
            observed in prop::collection::vec((0i32..30, 0i32..30), 6),
            max_unavailable in 1i32..4,
        ) {
            let target = split(total, &zones, "svc");
            let observed: BTreeMap<Zone, ZoneObserved> = zones.iter().zip(&observed)
                .map(|(z, (r, ready))| (z.zone.clone(), ZoneObserved { replicas: *r, ready: (*ready).min(*r) }))
                .collect();
            let paced = pace(&target, &observed, max_unavailable);
            let ready_now: i32 = observed.values().map(|o| o.ready).sum();
            // Worst case after scaling: each zone keeps min(ready, target) Ready pods.
            let ready_after: i32 = paced.iter().map(|(z, t)| observed.get(z).map_or(0, |o| o.ready.min(*t))).sum();
            prop_assert!(ready_after >= ready_now.min(total - max_unavailable), "ready {} -> {} with {:?}", ready_now, ready_after, paced);
            for ((_, p), (_, s)) in paced.iter().zip(&target) {
                prop_assert!(p >= s, "paced below the split");
            }
        }

        #[test]
        fn pace_converges_on_the_split_once_pods_are_ready(total in 0i32..60, zones in zone_list(), start in prop::collection::vec(0i32..30, 6)) {
            let target = split(total, &zones, "svc");
            let mut observed: BTreeMap<Zone, ZoneObserved> = zones.iter().zip(&start)
                .map(|(z, r)| (z.zone.clone(), ZoneObserved { replicas: *r, ready: *r })).collect();
            for _ in 0..100 {
                let paced = pace(&target, &observed, 1);
                if paced == target { break; }
                observed = paced.iter().map(|(z, n)| (z.clone(), ZoneObserved { replicas: *n, ready: *n })).collect();
            }
            prop_assert_eq!(pace(&target, &observed, 1), target);
        }
    }
}
