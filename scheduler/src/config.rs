//! The schedule file operators edit (TOML).
//!
//! ```toml
//! [[schedule]]
//! name = "daily-report"
//! cron = "0 9 * * *"              # 5 fields, or 6 with seconds first
//! timezone = "Europe/Amsterdam"   # IANA name; default UTC
//! event_type = "daily.report"
//! tenant_registry = true          # every tenant in the registry bucket; or tenants = ["acme"]
//! catch_up = "latest"             # skip | latest | all (with catch_up_max, default 100)
//! overlap = "skip_if_running"     # allow | skip_if_running (with max_run_secs, default 3600)
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::schedule::{Schedule, ScheduleError, compile_all};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    schedule: Vec<Schedule>,
}

/// Why a schedule file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A schedule is invalid.
    #[error("{path}: {source}")]
    Schedule {
        /// The file.
        path: String,
        /// The schedule's problem.
        source: ScheduleError,
    },
}

/// Parses and validates schedules from TOML text.
pub fn parse(text: &str, path: &str) -> Result<Vec<Schedule>, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string().trim().to_owned(),
    })?;
    compile_all(&file.schedule).map_err(|source| ConfigError::Schedule {
        path: path.into(),
        source,
    })?;
    Ok(file.schedule)
}

/// Reads, parses and validates a schedule file.
pub fn load(path: &Path) -> Result<Vec<Schedule>, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: name.clone(),
        source,
    })?;
    parse(&text, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
[[schedule]]
name = "daily-report"
cron = "0 9 * * *"
timezone = "Europe/Amsterdam"
event_type = "daily.report"
tenant_registry = true
catch_up = "latest"
overlap = "skip_if_running"

[[schedule]]
name = "health-check"
cron = "*/15 * * * *"
event_type = "health.check"
tenants = ["acme", "globex"]
catch_up = "all"
catch_up_max = 10
"#;
        let s = parse(text, "schedules.toml").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].timezone, "UTC");
    }

    #[test]
    fn errors_name_the_file_and_the_schedule() {
        let text = "[[schedule]]\nname = \"nightly\"\ncron = \"0 2 * * *\"\ntimezone = \"Nowhere/City\"\nevent_type = \"weekly.cleanup\"\ntenants = [\"acme\"]\n";
        let e = parse(text, "s.toml").unwrap_err().to_string();
        assert!(
            e.contains("s.toml") && e.contains("\"nightly\"") && e.contains("Nowhere/City"),
            "{e}"
        );
        let e = parse("[[schedule]]\nname = \"x\"\ncolour = 1\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml"), "{e}");
    }
}
