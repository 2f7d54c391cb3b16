//! Canary analysis verdicts: read a number from a JSON answer (Prometheus query API or any JSON
//! URL) and hold it against the bounds. Pure; the controller shell does the HTTP call.

use crate::api::Analysis;

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    /// What was measured, for the rollout message and Events.
    pub message: String,
}

impl Verdict {
    /// A check that could not be made counts as failed: a dead metrics endpoint must not
    /// wave a canary through.
    pub fn unreachable(why: impl std::fmt::Display) -> Self {
        Self { passed: false, message: format!("analysis failed: {why}") }
    }
}

/// Judges an answer body. Numbers may be JSON numbers or strings (Prometheus sends
/// `"value": [<time>, "0.05"]`).
pub fn judge(analysis: &Analysis, body: &str) -> Verdict {
    let json: serde_json::Value = match serde_json::from_str(body) {
        Ok(json) => json,
        Err(e) => return Verdict::unreachable(format!("{} did not answer JSON: {e}", analysis.url)),
    };
    let Some(found) = json.pointer(&analysis.json_pointer) else {
        return Verdict::unreachable(format!(
            "no value at {} in the answer of {}",
            analysis.json_pointer, analysis.url
        ));
    };
    let value = match found {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(value) = value.filter(|v| v.is_finite()) else {
        return Verdict::unreachable(format!("{found} at {} is not a number", analysis.json_pointer));
    };
    let too_low = analysis.min.is_some_and(|min| value < min);
    let too_high = analysis.max.is_some_and(|max| value > max);
    let bounds = match (analysis.min, analysis.max) {
        (Some(min), Some(max)) => format!("[{min}, {max}]"),
        (Some(min), None) => format!(">= {min}"),
        (None, Some(max)) => format!("<= {max}"),
        (None, None) => "any".to_owned(),
    };
    let passed = !too_low && !too_high;
    Verdict {
        passed,
        message: format!("analysis {}: {value} (wanted {bounds})", if passed { "passed" } else { "failed" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(min: Option<f64>, max: Option<f64>) -> Analysis {
        Analysis {
            url: "http://prometheus:9090/api/v1/query?query=errors".into(),
            json_pointer: "/data/result/0/value/1".into(),
            min,
            max,
            interval_seconds: 10,
            failure_limit: 0,
        }
    }

    const PROMETHEUS: &str =
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.07"]}]}}"#;

    #[test]
    fn prometheus_vector_values_are_read_from_strings() {
        assert!(!judge(&analysis(None, Some(0.05)), PROMETHEUS).passed);
        let verdict = judge(&analysis(None, Some(0.1)), PROMETHEUS);
        assert!(verdict.passed, "{verdict:?}");
        assert!(verdict.message.contains("0.07"));
    }

    #[test]
    fn plain_json_numbers_and_lower_bounds() {
        let mut a = analysis(Some(0.99), None);
        a.json_pointer = "/success_rate".into();
        assert!(judge(&a, r#"{"success_rate": 0.995}"#).passed);
        assert!(!judge(&a, r#"{"success_rate": 0.9}"#).passed);
    }

    #[test]
    fn missing_or_malformed_values_fail_the_check() {
        assert!(!judge(&analysis(None, Some(1.0)), r#"{"data":{"result":[]}}"#).passed);
        assert!(!judge(&analysis(None, Some(1.0)), "not json").passed);
        let mut a = analysis(None, Some(1.0));
        a.json_pointer = "/v".into();
        assert!(!judge(&a, r#"{"v": "NaN"}"#).passed);
    }
}
