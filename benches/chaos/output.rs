//! The results: benchmarks/chaos.json and the generated section of BENCHMARKS.md.

use super::*;

pub(super) fn write_outputs(settings: &Settings, results: &[Scenario]) -> anyhow::Result<()> {
    let json_path = std::env::var("CHAOS_OUT_JSON").unwrap_or_else(|_| "benchmarks/chaos.json".into());
    let md_path = std::env::var("CHAOS_OUT_MD").unwrap_or_else(|_| "/tmp/course-operator-chaos/table.md".into());
    let doc = json!({
        "benchmark": "chaos",
        "seed": settings.seed,
        "kills": settings.kills,
        "own_cluster": settings.own_cluster,
        "scenarios": results,
    });
    for path in [&json_path, &md_path] {
        if let Some(parent) = PathBuf::from(path).parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let mut md = format!(
        "Seed `{}`, {} kills requested, cluster {}.\n\n| scenario | result | figures | broken invariants |\n|---|---|---|---|\n",
        settings.seed,
        settings.kills,
        if settings.own_cluster { "started by chaos.sh" } else { "shared (zone loss and apiserver restart skipped)" }
    );
    for s in results {
        let result = match (&s.skipped, s.violations.is_empty()) {
            (Some(_), _) => "skipped".to_owned(),
            (None, true) => format!("passed ({:.0} s)", s.seconds),
            (None, false) => format!("**FAILED** ({:.0} s)", s.seconds),
        };
        let figures: Vec<String> = s
            .figures
            .iter()
            .map(|(k, v)| match v {
                Value::Number(n) => match n.as_f64() {
                    Some(f) if f.fract() != 0.0 => format!("{k} {f:.2}"),
                    _ => format!("{k} {n}"),
                },
                other => format!("{k} {other}"),
            })
            .collect();
        let broken = if let Some(why) = &s.skipped {
            why.clone()
        } else if s.violations.is_empty() {
            "none".into()
        } else {
            s.violations
                .iter()
                .map(|v| v.replace('|', "\\|").chars().take(300).collect::<String>())
                .collect::<Vec<_>>()
                .join("<br>")
        };
        md.push_str(&format!("| {} | {result} | {} | {broken} |\n", s.name, figures.join(", ").replace('|', "\\|")));
    }
    std::fs::write(&md_path, md)?;
    Ok(())
}
