//! The environment the operator injects (and a few knobs of the app's own).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub port: u16,
    /// Connection string of the database (secret: never logged).
    pub mongodb_uri: String,
    pub cache: Option<CacheConfig>,
    pub ttl: Duration,
    /// Served in `X-Course-Version`.
    pub version: String,
    /// Served in `X-Course-Pod` (the pod's hostname).
    pub pod: String,
    /// How long a terminating pod keeps serving after SIGTERM, so that its endpoint is
    /// withdrawn everywhere before it stops accepting connections.
    pub shutdown_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `host:port` of each Sentinel.
    pub sentinels: Vec<String>,
    pub master_name: String,
}

/// A variable that is missing or malformed, by name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

fn number<T: std::str::FromStr>(name: &'static str, value: Option<String>, default: T) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError { name, problem: format!("not a valid number: {v:?}") }),
    }
}

impl Config {
    /// Reads the configuration through `var` (the process environment in `main`).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let port = number("PORT", var("PORT"), 8080u16)?;
        let mongodb_uri = var("MONGODB_URI").filter(|v| !v.trim().is_empty()).ok_or(ConfigError {
            name: "MONGODB_URI",
            problem: "is required (the database's connection string)".into(),
        })?;
        let cache = match var("CACHE_SENTINELS").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(list) => {
                let sentinels: Vec<String> =
                    list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
                if let Some(bad) =
                    sentinels.iter().find(|s| s.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()))
                {
                    return Err(ConfigError { name: "CACHE_SENTINELS", problem: format!("{bad:?} is not host:port") });
                }
                let master_name = var("CACHE_MASTER_NAME").filter(|v| !v.trim().is_empty()).ok_or(ConfigError {
                    name: "CACHE_MASTER_NAME",
                    problem: "is required with CACHE_SENTINELS".into(),
                })?;
                Some(CacheConfig { sentinels, master_name })
            }
        };
        let ttl_seconds = number("CACHE_TTL_SECONDS", var("CACHE_TTL_SECONDS"), 300u64)?;
        if ttl_seconds == 0 {
            return Err(ConfigError { name: "CACHE_TTL_SECONDS", problem: "must be at least 1".into() });
        }
        let shutdown_delay = number("SHUTDOWN_DELAY_SECONDS", var("SHUTDOWN_DELAY_SECONDS"), 5u64)?;
        Ok(Config {
            port,
            mongodb_uri,
            cache,
            ttl: Duration::from_secs(ttl_seconds),
            version: var("COURSE_VERSION").unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            pod: var("HOSTNAME").unwrap_or_else(|| "unknown".to_owned()),
            shutdown_delay: Duration::from_secs(shutdown_delay),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn the_operator_wiring_is_read() {
        let c = config(&[
            ("PORT", "9000"),
            ("MONGODB_URI", "mongodb://db:27017/courses"),
            ("CACHE_SENTINELS", "a.cache:26379,b.cache:26379"),
            ("CACHE_MASTER_NAME", "web-cache"),
            ("CACHE_TTL_SECONDS", "60"),
            ("COURSE_VERSION", "v2"),
            ("HOSTNAME", "web-abc"),
        ])
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.cache.unwrap().sentinels, ["a.cache:26379", "b.cache:26379"]);
        assert_eq!((c.ttl, c.version.as_str(), c.pod.as_str()), (Duration::from_secs(60), "v2", "web-abc"));
        assert_eq!(c.shutdown_delay, Duration::from_secs(5));
    }

    #[test]
    fn without_sentinels_there_is_no_cache_and_the_ttl_defaults_to_300s() {
        let c = config(&[("MONGODB_URI", "mongodb://db")]).unwrap();
        assert_eq!((c.cache, c.ttl, c.port), (None, Duration::from_secs(300), 8080));
    }

    #[test]
    fn errors_name_the_variable() {
        let name = |pairs: &[(&str, &str)]| config(pairs).unwrap_err().name;
        assert_eq!(name(&[]), "MONGODB_URI");
        assert_eq!(name(&[("MONGODB_URI", "m"), ("PORT", "http")]), "PORT");
        assert_eq!(name(&[("MONGODB_URI", "m"), ("CACHE_SENTINELS", "a:1")]), "CACHE_MASTER_NAME");
        assert_eq!(
            name(&[("MONGODB_URI", "m"), ("CACHE_SENTINELS", "a"), ("CACHE_MASTER_NAME", "x")]),
            "CACHE_SENTINELS"
        );
        assert_eq!(name(&[("MONGODB_URI", "m"), ("CACHE_TTL_SECONDS", "0")]), "CACHE_TTL_SECONDS");
    }

    #[test]
    fn the_uri_never_appears_in_an_error() {
        let err = config(&[("MONGODB_URI", "mongodb://user:s3cret@db"), ("PORT", "x")]).unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
    }
}
