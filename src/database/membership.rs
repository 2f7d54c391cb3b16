//! The replica set's membership: which members the set should have for a `spec.database`
//! ([`desired_members`], [`replica_set_config`]) and how to walk from the members it has to
//! those one member at a time ([`reconfig_steps`]). Pure.
//!
//! This is the replica-set logic that matters for safety. The init Job runs the same planner in
//! JavaScript (`render/scripts/mongo-plan.js`); a test (`tests/data_mongo_scripts.rs`) feeds
//! both the same cases and requires identical answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::MongoReplicaSet;
use crate::api::DatabaseSpec;
use crate::names;

/// MongoDB allows at most seven voting members in a replica set.
pub const MAX_VOTING_MEMBERS: usize = 7;
/// Member `_id` of the arbiter: fixed, because MongoDB never lets a member's `_id` change and
/// the data members' ids follow their ordinals (0..=49).
pub const ARBITER_MEMBER_ID: u32 = 100;

/// One member of a replica-set config, with the fields the operator manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    #[serde(rename = "_id")]
    pub id: u32,
    pub host: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub arbiter_only: bool,
    pub priority: u32,
    pub votes: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Member {
    fn votes(&self) -> bool {
        self.votes > 0
    }
}

/// Whether the arbiter is part of the set: only when it turns an even number of voting data
/// members odd. With eight or more data members seven of them vote, and an arbiter would make
/// it eight.
pub fn uses_arbiter(db: &DatabaseSpec) -> bool {
    let data_voters = usize::try_from(db.members).unwrap_or(0).min(MAX_VOTING_MEMBERS);
    db.arbiter && data_voters % 2 == 0 && data_voters < MAX_VOTING_MEMBERS
}

/// The members the set should have. The lowest ordinals vote: at most seven voters, always an
/// odd number (an even count can split evenly and elect nobody), so without an arbiter the
/// highest-ordinal would-be voter of an even count gets no vote. Non-voters have priority 0,
/// as MongoDB requires. `zones` (ordinal → zone) adds `{zone: …}` tags where known.
pub fn desired_members(set: MongoReplicaSet<'_>, db: &DatabaseSpec, zones: &BTreeMap<i32, String>) -> Vec<Member> {
    let count = usize::try_from(db.members).unwrap_or(0);
    let mut data_voters = count.min(MAX_VOTING_MEMBERS);
    let arbiter = uses_arbiter(db);
    if data_voters % 2 == 0 && !arbiter {
        data_voters = data_voters.saturating_sub(1);
    }
    let mut members: Vec<Member> = (0..db.members)
        .zip(0u32..)
        .map(|(ordinal, id)| {
            let votes = u32::from(usize::try_from(ordinal).is_ok_and(|o| o < data_voters));
            Member {
                id,
                host: set.member_host(ordinal),
                arbiter_only: false,
                priority: votes,
                votes,
                tags: zones.get(&ordinal).map(|z| BTreeMap::from([("zone".to_owned(), z.clone())])).unwrap_or_default(),
            }
        })
        .collect();
    if arbiter {
        members.push(Member {
            id: ARBITER_MEMBER_ID,
            host: set.arbiter_host(),
            arbiter_only: true,
            priority: 0,
            votes: 1,
            tags: BTreeMap::new(),
        });
    }
    members
}

/// The replica-set config document (`rs.initiate` form): `_id` and members.
pub fn replica_set_config(
    set: MongoReplicaSet<'_>,
    db: &DatabaseSpec,
    zones: &BTreeMap<i32, String>,
) -> serde_json::Value {
    serde_json::json!({
        "_id": names::database_replica_set(set.name),
        "members": desired_members(set, db, zones),
    })
}

/// One pending change of the walk from the current to the desired members.
#[derive(Clone, Debug)]
enum Change {
    Remove { id: u32, host: String, delta: i32 },
    Update { id: u32, to: Member, delta: i32 },
    Add { id: u32, to: Member, delta: i32 },
}

impl Change {
    fn id(&self) -> u32 {
        match self {
            Self::Remove { id, .. } | Self::Update { id, .. } | Self::Add { id, .. } => *id,
        }
    }

    /// Change in the number of voting members.
    fn delta(&self) -> i32 {
        match self {
            Self::Remove { delta, .. } | Self::Update { delta, .. } | Self::Add { delta, .. } => *delta,
        }
    }
}

fn pending(config: &[Member], desired: &[Member]) -> Vec<Change> {
    let vote = |m: &Member| i32::from(m.votes());
    let mut changes = Vec::new();
    for m in config {
        match desired.iter().find(|d| d.host == m.host) {
            // An arbiter cannot become a data member or back: remove it, add it anew later.
            None => changes.push(Change::Remove { id: m.id, host: m.host.clone(), delta: -vote(m) }),
            Some(d) if d.arbiter_only != m.arbiter_only => {
                changes.push(Change::Remove { id: m.id, host: m.host.clone(), delta: -vote(m) });
            }
            Some(d) if d.priority != m.priority || d.votes != m.votes || d.tags != m.tags => {
                // A member keeps its `_id` for life: MongoDB rejects a reconfig changing it.
                let to = Member { id: m.id, ..d.clone() };
                changes.push(Change::Update { id: m.id, delta: vote(&to) - vote(m), to });
            }
            Some(_) => {}
        }
    }
    for d in desired {
        if !config.iter().any(|m| m.host == d.host) {
            let taken = |id: u32| config.iter().any(|m| m.id == id);
            let id = if taken(d.id) { (0..=255).find(|&id| !taken(id)).unwrap_or(d.id) } else { d.id };
            changes.push(Change::Add { id, delta: vote(d), to: Member { id, ..d.clone() } });
        }
    }
    changes
}

/// Toward the desired voter count, never above [`MAX_VOTING_MEMBERS`], never to zero voters;
/// shrink from the highest `_id`, grow from the lowest.
fn choose(config: &[Member], changes: &[Change], target_voters: usize) -> Option<Change> {
    let voters = config.iter().filter(|m| m.votes()).count();
    let want = match voters.cmp(&target_voters) {
        std::cmp::Ordering::Greater => -1,
        std::cmp::Ordering::Less => 1,
        std::cmp::Ordering::Equal if changes.iter().any(|c| c.delta() == 0) => 0,
        std::cmp::Ordering::Equal if voters < MAX_VOTING_MEMBERS => 1,
        std::cmp::Ordering::Equal => -1,
    };
    let matching: Vec<&Change> = changes.iter().filter(|c| c.delta() == want).collect();
    let pool: Vec<&Change> = if matching.is_empty() { changes.iter().collect() } else { matching };
    let picked =
        if want == -1 { pool.into_iter().max_by_key(|c| c.id()) } else { pool.into_iter().min_by_key(|c| c.id()) };
    picked.cloned()
}

fn apply(config: &mut Vec<Member>, change: Change) {
    match change {
        Change::Remove { host, .. } => config.retain(|m| m.host != host),
        Change::Update { to, .. } => {
            if let Some(m) = config.iter_mut().find(|m| m.host == to.host) {
                *m = to;
            }
        }
        Change::Add { to, .. } => config.push(to),
    }
    config.sort_by_key(|m| m.id);
}

/// Successive member lists from `current` to `desired`, each differing from the one before by
/// exactly one member (added, removed or changed), as MongoDB's reconfig requires; empty when
/// nothing changes. Members are matched by host and keep their `_id`. While the voter count
/// must shrink it shrinks first, while it must grow it grows first, so voters stay within
/// 1..=7 whenever `current` and `desired` are valid configs.
pub fn reconfig_steps(current: &[Member], desired: &[Member]) -> Vec<Vec<Member>> {
    let target_voters = desired.iter().filter(|m| m.votes()).count();
    let mut config: Vec<Member> = current.to_vec();
    config.sort_by_key(|m| m.id);
    let mut steps = Vec::new();
    // Every host changes at most twice (remove + add), so the walk always ends.
    for _ in 0..=2 * (current.len() + desired.len()) {
        let changes = pending(&config, desired);
        let Some(change) = choose(&config, &changes, target_voters) else { break };
        apply(&mut config, change);
        steps.push(config.clone());
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use proptest::prelude::*;

    use super::*;

    /// The set of the `full-stack` sample (`academy`, rendered without a namespace).
    const ACADEMY: MongoReplicaSet<'static> = MongoReplicaSet { name: "academy", namespace: "default" };

    fn database(members: i32, arbiter: bool) -> DatabaseSpec {
        DatabaseSpec {
            enabled: true,
            members,
            arbiter,
            version: "7.0".to_owned(),
            storage: Quantity("10Gi".to_owned()),
            storage_class_name: None,
            image: None,
            backup: None,
            external: None,
        }
    }

    fn voters(members: &[Member]) -> usize {
        members.iter().filter(|m| m.votes > 0).count()
    }

    /// The rules MongoDB and we hold every config to.
    fn assert_valid(members: &[Member], what: &str) {
        assert!(voters(members) <= MAX_VOTING_MEMBERS, "{what}: more than 7 voters");
        assert!(voters(members) >= 1, "{what}: no voter");
        for m in members {
            assert!(m.priority == 0 || m.votes == 1, "{what}: {} has priority without a vote", m.host);
            assert!(!m.arbiter_only || m.priority == 0, "{what}: arbiter {} with priority", m.host);
        }
        let hosts: BTreeSet<&str> = members.iter().map(|m| m.host.as_str()).collect();
        assert_eq!(hosts.len(), members.len(), "{what}: duplicate host");
        let ids: BTreeSet<u32> = members.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), members.len(), "{what}: duplicate _id");
    }

    /// Hosts whose managed fields differ between two member lists (added or removed count too).
    fn changed_hosts(a: &[Member], b: &[Member]) -> usize {
        let hosts: BTreeSet<&str> = a.iter().chain(b).map(|m| m.host.as_str()).collect();
        hosts
            .into_iter()
            .filter(|h| {
                let x = a.iter().find(|m| m.host == *h);
                let y = b.iter().find(|m| m.host == *h);
                match (x, y) {
                    (Some(x), Some(y)) => {
                        (x.arbiter_only, x.priority, x.votes, &x.tags) != (y.arbiter_only, y.priority, y.votes, &y.tags)
                    }
                    _ => true,
                }
            })
            .count()
    }

    fn members_for(members: i32, arbiter: bool) -> Vec<Member> {
        desired_members(ACADEMY, &database(members, arbiter), &BTreeMap::new())
    }

    #[test]
    fn three_members_all_vote() {
        let members = members_for(3, false);
        assert_eq!(
            members.iter().map(|m| (m.id, m.votes, m.priority)).collect::<Vec<_>>(),
            [(0, 1, 1), (1, 1, 1), (2, 1, 1)]
        );
    }

    #[test]
    fn an_even_count_gets_an_arbiter_or_loses_a_vote() {
        let with = members_for(4, true);
        assert_eq!(voters(&with), 5);
        assert!(with.last().is_some_and(|m| m.arbiter_only && m.id == ARBITER_MEMBER_ID && m.votes == 1));
        let without = members_for(4, false);
        assert_eq!(voters(&without), 3);
        assert_eq!((without[3].votes, without[3].priority), (0, 0), "highest ordinal steps back");
        // Odd counts need no arbiter even when asked for one.
        assert!(!members_for(5, true).iter().any(|m| m.arbiter_only));
        // Eight members: seven vote, an arbiter would make it eight.
        assert!(!members_for(8, true).iter().any(|m| m.arbiter_only));
        assert_eq!(voters(&members_for(8, true)), 7);
    }

    #[test]
    fn zones_become_member_tags() {
        let zones = BTreeMap::from([(0, "eastus2-1".to_owned()), (2, "eastus2-3".to_owned())]);
        let config = replica_set_config(ACADEMY, &database(3, false), &zones);
        assert_eq!(config["_id"], "academy-db");
        assert_eq!(config["members"][0]["tags"]["zone"], "eastus2-1");
        assert!(config["members"][1].get("tags").is_none());
        assert_eq!(config["members"][2]["tags"]["zone"], "eastus2-3");
    }

    #[test]
    fn scaling_three_to_five_adds_one_voter_at_a_time() {
        let steps = reconfig_steps(&members_for(3, false), &members_for(5, false));
        let counts: Vec<(usize, usize)> = steps.iter().map(|s| (s.len(), voters(s))).collect();
        assert_eq!(counts, [(4, 4), (5, 5)]);
        assert!(reconfig_steps(&members_for(5, false), &members_for(5, false)).is_empty());
    }

    proptest! {
        #[test]
        fn desired_members_follow_the_voting_rules(members in 1i32..=50, arbiter: bool) {
            let config = members_for(members, arbiter);
            assert_valid(&config, "desired");
            prop_assert_eq!(voters(&config) % 2, 1, "odd number of voters");
            prop_assert!(config.iter().all(|m| m.priority == 0 || m.votes == 1));
            let data = config.iter().filter(|m| !m.arbiter_only).count();
            prop_assert_eq!(data, usize::try_from(members).unwrap_or_default());
        }

        #[test]
        fn reconfig_moves_one_member_per_step(
            from in 1i32..=50, from_arbiter: bool, to in 1i32..=50, to_arbiter: bool,
        ) {
            let current = members_for(from, from_arbiter);
            let desired = members_for(to, to_arbiter);
            let steps = reconfig_steps(&current, &desired);
            let mut previous = current.clone();
            for (i, step) in steps.iter().enumerate() {
                assert_valid(step, &format!("step {i} of {from}{} -> {to}{}", if from_arbiter {"+a"} else {""}, if to_arbiter {"+a"} else {""}));
                prop_assert_eq!(changed_hosts(&previous, step), 1, "one member per step");
                prop_assert!(voters(&previous).abs_diff(voters(step)) <= 1, "one voter per step");
                previous = step.clone();
            }
            prop_assert_eq!(changed_hosts(&previous, &desired), 0, "ends at the desired members");
        }
    }
}
