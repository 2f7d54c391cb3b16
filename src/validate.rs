//! Semantic validation of a CourseService.
//!
//! The CRD schema and its CEL rules reject most bad input at admission. This module repeats
//! those rules in Rust (so `course-operator render` answers the same without a cluster) and adds
//! the checks a schema cannot express; the controller stops with an `InvalidSpec` condition on
//! any of them and touches no child. Every message starts with the field it is about.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{CourseService, CourseServiceSpec, MAX_NAME_LEN, StrategyType};
use crate::observe::Observed;
use crate::quantity;
use crate::render::workload::{AppTemplate, app_template, env_names};
use crate::render::{Context, Images};

/// Environment variables the operator sets itself; a user value would clash on apply.
pub const RESERVED_ENV: &[&str] = &[
    env_names::PORT,
    env_names::CACHE_SENTINELS,
    env_names::CACHE_MASTER_NAME,
    env_names::CACHE_TTL_SECONDS,
    env_names::MONGODB_URI,
];

/// One problem, tied to the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.autoscaling.maxReplicas`.
    pub field: String,
    /// What is wrong, starting with the field name.
    pub message: String,
}

/// Every problem found in a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec(pub Vec<FieldError>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let messages: Vec<&str> = self.0.iter().map(|e| e.message.as_str()).collect();
        f.write_str(&messages.join("; "))
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(FieldError { field: field.to_owned(), message: format!("{field}: {}", message()) });
        }
    }

    fn range(&mut self, value: i32, min: i32, max: i32, field: &str) {
        self.check((min..=max).contains(&value), field, || format!("must be between {min} and {max}, got {value}"));
    }

    fn pattern(&mut self, ok: bool, value: &str, field: &str, expected: &str) {
        self.check(ok, field, || format!("{value:?} is not {expected}"));
    }

    /// An image field the user may leave out (the operator's default image is used then).
    fn optional_image(&mut self, image: Option<&str>, field: &str) {
        if let Some(image) = image {
            self.check(!image.is_empty() && !image.contains(char::is_whitespace), field, || {
                format!("{image:?} must be an image reference without white space")
            });
        }
    }
}

/// A CourseService that passed [`validate`], with what every later step derives from its spec,
/// computed once: its identity for the renderers and its pod template with the revision.
#[derive(Clone, Debug)]
pub struct ValidatedCourse<'a> {
    /// Name, namespace, owner reference and the operator's default images.
    pub ctx: Context<'a>,
    /// The spec's pod template; its hash is the revision that names the ReplicaSets.
    pub template: AppTemplate,
}

impl<'a> ValidatedCourse<'a> {
    /// Validates `cs`; only a valid spec gets a `ValidatedCourse`.
    pub fn new(cs: &'a CourseService, images: &'a Images) -> Result<Self, InvalidSpec> {
        validate(cs)?;
        let ctx = Context::new(cs).with_images(images);
        let template = app_template(&ctx);
        Ok(Self { ctx, template })
    }

    pub fn cs(&self) -> &'a CourseService {
        self.ctx.cs
    }

    /// Revision of the spec's pod template.
    pub fn revision(&self) -> &str {
        &self.template.revision
    }

    /// The pod template of `revision`: the spec's, or an older revision's as `observed` carries
    /// it (`None` once every ReplicaSet of that revision is gone: it cannot be rendered again).
    pub fn template_for<'b>(&'b self, revision: &str, observed: &'b Observed) -> Option<&'b AppTemplate> {
        if revision == self.template.revision {
            return Some(&self.template);
        }
        observed.workloads.values().filter(|w| w.revision == revision).find_map(|w| w.template.as_ref())
    }
}

/// Checks a CourseService; `Err` lists every problem found.
pub fn validate(cs: &CourseService) -> Result<(), InvalidSpec> {
    let mut errors = Errors::default();
    let name = cs.metadata.name.as_deref().unwrap_or_default();
    errors.check(!name.is_empty(), "metadata.name", || "is required".into());
    errors.check(name.len() <= MAX_NAME_LEN, "metadata.name", || {
        format!("must be at most {MAX_NAME_LEN} characters: children append -<revision>-<zone> to it")
    });
    errors.pattern(
        name.is_empty() || is_dns1035_label(name),
        name,
        "metadata.name",
        "a DNS-1035 label (lowercase letters, digits, '-', starting with a letter)",
    );
    validate_spec(&cs.spec, &mut errors);
    if errors.0.is_empty() { Ok(()) } else { Err(InvalidSpec(errors.0)) }
}

fn validate_spec(spec: &CourseServiceSpec, e: &mut Errors) {
    e.check(!spec.image.trim().is_empty(), "spec.image", || "is required".into());
    e.check(!spec.image.contains(char::is_whitespace), "spec.image", || {
        format!("{:?} must not contain white space", spec.image)
    });
    e.range(spec.port, 1, 65535, "spec.port");
    e.range(spec.replicas, 0, 1000, "spec.replicas");

    let mut seen = BTreeSet::new();
    for zone in &spec.zones {
        e.check(seen.insert(zone), "spec.zones", || format!("zone {zone:?} is listed twice"));
        e.pattern(is_zone_name(zone), zone, "spec.zones", "a zone name (lowercase letters, digits, '-', '.')");
    }

    let mut env_names = BTreeSet::new();
    for var in &spec.env {
        e.check(env_names.insert(var.name.as_str()), "spec.env", || format!("variable {:?} is set twice", var.name));
        e.check(!RESERVED_ENV.contains(&var.name.as_str()), "spec.env", || {
            format!("variable {:?} is set by the operator; reserved names: {}", var.name, RESERVED_ENV.join(", "))
        });
    }

    validate_placement(spec, e);

    if let Some(resources) = &spec.resources {
        validate_resources(resources, e);
    }

    if let Some(probes) = &spec.probes {
        for (path, field) in
            [(&probes.readiness_path, "spec.probes.readinessPath"), (&probes.liveness_path, "spec.probes.livenessPath")]
        {
            if let Some(path) = path {
                e.pattern(path.starts_with('/'), path, field, "an absolute path starting with /");
            }
        }
    }

    if let Some(a) = &spec.autoscaling {
        e.range(a.min_replicas, 1, 1000, "spec.autoscaling.minReplicas");
        e.range(a.max_replicas, 1, 1000, "spec.autoscaling.maxReplicas");
        e.check(a.max_replicas >= a.min_replicas, "spec.autoscaling.maxReplicas", || {
            "must be greater than or equal to spec.autoscaling.minReplicas".into()
        });
        e.range(a.target_cpu_utilization_percentage, 1, 100, "spec.autoscaling.targetCPUUtilizationPercentage");
        if let Some(seconds) = a.scale_down_stabilization_seconds {
            e.range(seconds, 0, 3600, "spec.autoscaling.scaleDownStabilizationSeconds");
        }
    }

    e.range(spec.service.port, 1, 65535, "spec.service.port");
    e.range(spec.disruption.max_unavailable, 1, 1000, "spec.disruption.maxUnavailable");
    validate_strategy(spec, e);
    validate_data(spec, e);
}

/// What the apiserver would refuse in a pod's nodeSelector and tolerations, caught before any
/// child is written (a refused pod template would otherwise fail every apply).
fn validate_placement(spec: &CourseServiceSpec, e: &mut Errors) {
    e.check(spec.node_selector.len() <= 20, "spec.nodeSelector", || {
        format!("may hold at most 20 labels, got {}", spec.node_selector.len())
    });
    e.check(spec.tolerations.len() <= 20, "spec.tolerations", || {
        format!("may hold at most 20 tolerations, got {}", spec.tolerations.len())
    });
    for (key, value) in &spec.node_selector {
        let field = format!("spec.nodeSelector[{key:?}]");
        e.pattern(is_label_key(key), key, &field, "a label key like kubernetes.azure.com/agentpool");
        e.pattern(is_label_value(value), value, &field, "a label value (at most 63 letters, digits, '-', '_', '.')");
    }
    for (i, t) in spec.tolerations.iter().enumerate() {
        let field = format!("spec.tolerations[{i}]");
        let operator = t.operator.as_deref().unwrap_or("Equal");
        e.check(matches!(operator, "Equal" | "Exists"), &format!("{field}.operator"), || {
            format!("{operator:?} must be Equal or Exists")
        });
        let effect = t.effect.as_deref().unwrap_or_default();
        e.check(
            matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute"),
            &format!("{field}.effect"),
            || format!("{effect:?} must be NoSchedule, PreferNoSchedule or NoExecute (or empty for all)"),
        );
        let key = t.key.as_deref().unwrap_or_default();
        e.check(!key.is_empty() || operator == "Exists", &format!("{field}.key"), || {
            "may be empty only with operator Exists".into()
        });
        if !key.is_empty() {
            e.pattern(
                is_label_key(key),
                key,
                &format!("{field}.key"),
                "a taint key like kubernetes.azure.com/scalesetpriority",
            );
        }
        e.check(
            operator != "Exists" || t.value.as_deref().unwrap_or_default().is_empty(),
            &format!("{field}.value"),
            || "must be empty with operator Exists".into(),
        );
        e.check(t.toleration_seconds.is_none() || effect == "NoExecute", &format!("{field}.tolerationSeconds"), || {
            "is only allowed with effect NoExecute".into()
        });
    }
}

fn validate_strategy(spec: &CourseServiceSpec, e: &mut Errors) {
    let s = &spec.strategy;
    e.range(s.progress_deadline_seconds, 10, 86400, "spec.strategy.progressDeadlineSeconds");
    let blocks = [
        (s.rolling.is_some(), StrategyType::Rolling, "spec.strategy.rolling"),
        (s.canary.is_some(), StrategyType::Canary, "spec.strategy.canary"),
        (s.blue_green.is_some(), StrategyType::BlueGreen, "spec.strategy.blueGreen"),
    ];
    for (present, kind, field) in blocks {
        e.check(!present || s.type_ == kind, field, || format!("is only allowed when spec.strategy.type is {kind}"));
    }
    e.check(s.type_ != StrategyType::Canary || s.canary.is_some(), "spec.strategy.canary", || {
        "is required when spec.strategy.type is Canary".into()
    });

    if let Some(rolling) = &s.rolling {
        let surge = check_int_or_percent(&rolling.max_surge, "spec.strategy.rolling.maxSurge", e);
        let unavailable = check_int_or_percent(&rolling.max_unavailable, "spec.strategy.rolling.maxUnavailable", e);
        e.check(surge != Some(0) || unavailable != Some(0), "spec.strategy.rolling.maxSurge", || {
            "and spec.strategy.rolling.maxUnavailable cannot both be 0: the update could never progress".into()
        });
    }

    if let Some(canary) = &s.canary {
        e.check(!canary.steps.is_empty(), "spec.strategy.canary.steps", || "needs at least one step".into());
        let mut last_weight = 0;
        for (i, step) in canary.steps.iter().enumerate() {
            let field = format!("spec.strategy.canary.steps[{i}]");
            e.check(step.set_weight.is_some() != step.pause.is_some(), &field, || {
                "must set exactly one of setWeight or pause".into()
            });
            if let Some(weight) = step.set_weight {
                e.range(weight, 1, 100, &format!("{field}.setWeight"));
                e.check(weight >= last_weight, &format!("{field}.setWeight"), || {
                    format!("{weight} is lower than the previous step's {last_weight}: canary weights only go up")
                });
                last_weight = weight;
            }
            if let Some(duration) = step.pause.as_ref().and_then(|p| p.duration.as_deref()) {
                e.pattern(
                    parse_duration(duration).is_some(),
                    duration,
                    &format!("{field}.pause.duration"),
                    "a duration like 30s, 5m or 1h30m",
                );
            }
        }
        if let Some(analysis) = &canary.analysis {
            let url = &analysis.url;
            e.pattern(
                url.starts_with("http://") || url.starts_with("https://"),
                url,
                "spec.strategy.canary.analysis.url",
                "an http(s) URL",
            );
            e.check(analysis.min.is_some() || analysis.max.is_some(), "spec.strategy.canary.analysis", || {
                "needs at least one of min or max".into()
            });
            e.check(
                analysis.json_pointer.is_empty() || analysis.json_pointer.starts_with('/'),
                "spec.strategy.canary.analysis.jsonPointer",
                || format!("{:?} is not an RFC 6901 pointer", analysis.json_pointer),
            );
            e.range(analysis.interval_seconds, 1, 3600, "spec.strategy.canary.analysis.intervalSeconds");
            e.range(analysis.failure_limit, 0, 100, "spec.strategy.canary.analysis.failureLimit");
        }
    }

    if let Some(bg) = &s.blue_green {
        if let Some(seconds) = bg.auto_promotion_seconds {
            e.range(seconds, 0, 86400, "spec.strategy.blueGreen.autoPromotionSeconds");
        }
        e.range(bg.scale_down_delay_seconds, 0, 86400, "spec.strategy.blueGreen.scaleDownDelaySeconds");
    }
}

fn validate_data(spec: &CourseServiceSpec, e: &mut Errors) {
    if let Some(cache) = &spec.cache {
        e.range(cache.replicas, 1, 9, "spec.cache.replicas");
        e.range(cache.ttl_seconds, 1, 604_800, "spec.cache.ttlSeconds");
        let bytes = quantity::to_bytes(&cache.max_memory.0);
        e.check(bytes.is_some_and(|b| b >= 1 << 20), "spec.cache.maxMemory", || {
            format!("{:?} must be a memory size of at least 1Mi", cache.max_memory.0)
        });
        e.optional_image(cache.image.as_deref(), "spec.cache.image");
    }
    if let Some(db) = &spec.database {
        e.range(db.members, 1, 50, "spec.database.members");
        e.check(db.members % 2 == 1 || db.arbiter, "spec.database.members", || {
            format!(
                "must be odd, or set spec.database.arbiter: true, so elections keep a majority (got {})",
                db.members
            )
        });
        e.pattern(is_major_minor(&db.version), &db.version, "spec.database.version", "a major.minor version like 7.0");
        e.check(quantity::to_bytes(&db.storage.0).is_some_and(|b| b > 0), "spec.database.storage", || {
            format!("{:?} must be a positive storage size like 10Gi", db.storage.0)
        });
        if let Some(backup) = &db.backup {
            e.pattern(
                is_cron_schedule(&backup.schedule),
                &backup.schedule,
                "spec.database.backup.schedule",
                "a cron schedule (five fields or @daily)",
            );
            e.range(backup.keep, 1, 365, "spec.database.backup.keep");
            e.check(
                quantity::to_bytes(&backup.storage.0).is_some_and(|b| b > 0),
                "spec.database.backup.storage",
                || format!("{:?} must be a positive storage size like 20Gi", backup.storage.0),
            );
            e.optional_image(backup.image.as_deref(), "spec.database.backup.image");
        }
        e.optional_image(db.image.as_deref(), "spec.database.image");
        if let Some(external) = &db.external {
            e.check(db.backup.is_none(), "spec.database.backup", || {
                "backups are taken of the operator's own replica set; back up an external database with its provider's tools".into()
            });
            let secret = &external.uri_secret;
            e.pattern(
                secret.name.len() <= 253
                    && secret.name.split('.').all(|part| is_token(part, is_lower_alphanumeric, b"-")),
                &secret.name,
                "spec.database.external.uriSecret.name",
                "a Secret name (a DNS subdomain)",
            );
            e.pattern(
                secret.key.len() <= 253
                    && !secret.key.is_empty()
                    && secret.key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
                &secret.key,
                "spec.database.external.uriSecret.key",
                "a Secret key (alphanumerics, '-', '_', '.')",
            );
        }
    }
}

/// Quantities must parse and not be negative, and a request may not exceed its limit: the
/// apiserver would reject every ReplicaSet rendered from such a spec.
fn validate_resources(resources: &k8s_openapi::api::core::v1::ResourceRequirements, e: &mut Errors) {
    let mut parsed = |kind: &str,
                      map: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        let mut values = std::collections::BTreeMap::new();
        for (name, quantity) in map.iter().flatten() {
            let field = format!("spec.resources.{kind}.{name}");
            match quantity::to_f64(&quantity.0) {
                Some(value) if value >= 0.0 => {
                    values.insert(name.clone(), value);
                }
                Some(_) => e.check(false, &field, || format!("{:?} must not be negative", quantity.0)),
                None => e.check(false, &field, || format!("{:?} is not a quantity like 250m or 128Mi", quantity.0)),
            }
        }
        values
    };
    let requests = parsed("requests", &resources.requests);
    let limits = parsed("limits", &resources.limits);
    for (name, request) in &requests {
        if let Some(limit) = limits.get(name) {
            e.check(request <= limit, &format!("spec.resources.requests.{name}"), || {
                format!("must not exceed spec.resources.limits.{name}")
            });
        }
    }
}

/// Returns the integer when the value is a plain number (a percentage of 0 also counts as 0).
fn check_int_or_percent(value: &IntOrString, field: &str, e: &mut Errors) -> Option<i32> {
    match value {
        IntOrString::Int(n) => {
            e.check(*n >= 0, field, || format!("must not be negative, got {n}"));
            Some(*n)
        }
        IntOrString::String(s) => {
            let percent =
                s.strip_suffix('%').filter(|d| (1..=3).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
            e.pattern(percent.is_some(), s, field, "a non-negative number or a percentage like 25%");
            percent.and_then(|d| d.parse().ok())
        }
    }
}

/// Parses durations like `30s`, `5m`, `1h30m`, `250ms` into milliseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(value.checked_mul(unit_ms)?)?;
    }
    Some(total)
}

fn is_dns1035_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

/// At most 63 bytes, starting and ending with an `edge` byte, with `edge` or `inner` bytes
/// between: the shape of every Kubernetes name part.
fn is_token(s: &str, edge: fn(&u8) -> bool, inner: &[u8]) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || inner.contains(b))
}

fn is_lower_alphanumeric(b: &u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A label name: alphanumerics with '-', '_', '.' between.
fn is_label_name(s: &str) -> bool {
    is_token(s, u8::is_ascii_alphanumeric, b"-_.")
}

/// A label key: a name with an optional DNS-subdomain prefix (`prefix/name`).
fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => {
            prefix.len() <= 253
                && prefix.split('.').all(|part| is_token(part, is_lower_alphanumeric, b"-"))
                && is_label_name(name)
        }
        None => is_label_name(s),
    }
}

/// A label value: empty or a label name.
fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

fn is_zone_name(s: &str) -> bool {
    is_token(s, is_lower_alphanumeric, b"-.")
}

fn is_major_minor(s: &str) -> bool {
    let mut parts = s.split('.');
    let numeric = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none()
}

fn is_cron_schedule(s: &str) -> bool {
    const MACROS: &[&str] = &["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
    MACROS.contains(&s) || s.split_whitespace().count() == 5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_milliseconds() {
        assert_eq!(parse_duration("30s"), Some(30_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn label_keys_take_an_optional_dns_prefix() {
        for good in ["app", "kubernetes.azure.com/agentpool", "kwok.x-k8s.io/node", "a_b.c-d"] {
            assert!(is_label_key(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Example.com/x", "a/b/c", "a/", "/a", &"x".repeat(64)] {
            assert!(!is_label_key(bad), "{bad}");
        }
        assert!(is_label_value("") && is_label_value("courses") && !is_label_value("a b"));
    }

    #[test]
    fn zone_names_follow_label_rules() {
        assert!(is_zone_name("eastus2-1"));
        assert!(is_zone_name("us-east-1a"));
        assert!(!is_zone_name("Zone_A"));
        assert!(!is_zone_name("-a"));
    }

    #[test]
    fn cron_schedules_need_five_fields_or_a_macro() {
        assert!(is_cron_schedule("0 3 * * *"));
        assert!(is_cron_schedule("@daily"));
        assert!(!is_cron_schedule("0 3 * *"));
    }
}
