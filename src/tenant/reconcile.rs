//! `[reconcile]` in a tenant file: when the relay sweeps the studio's customers by itself.

use std::time::Duration;

use serde::Deserialize;

use super::TenantError;

/// The shortest `every`: a sweep of a 20,000-member studio takes about 200 requests, and the
/// vendor's list endpoint has its own budget, but sweeping more often than hourly is a loop.
const MIN_EVERY: Duration = Duration::from_secs(3600);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ReconcileFile {
    #[serde(default, with = "humantime_serde")]
    after_downtime: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    every: Option<Duration>,
}

/// When sweeps start without anyone asking. Either one also makes the studio record a baseline
/// as soon as it has none, so that the first sweep it triggers has something to compare with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Sweep once webhooks can reach the relay again after they could not (the relay down,
    /// storage below its floor, an expired certificate) for at least this long.
    pub after_downtime: Option<Duration>,
    /// Sweep this long after the last sweep ended.
    pub every: Option<Duration>,
}

impl ReconcileSettings {
    pub fn is_on(&self) -> bool {
        self.after_downtime.is_some() || self.every.is_some()
    }
}

pub(super) fn build(
    raw: ReconcileFile,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<ReconcileSettings, TenantError> {
    if raw.every.is_some_and(|every| every < MIN_EVERY) {
        return Err(err(
            "reconcile.every",
            "must be at least 1h: a sweep reads every customer".into(),
        ));
    }
    if raw.after_downtime.is_some_and(|d| d.is_zero()) {
        return Err(err(
            "reconcile.after_downtime",
            "must be longer than 0s".into(),
        ));
    }
    Ok(ReconcileSettings {
        after_downtime: raw.after_downtime,
        every: raw.every,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ReconcileSettings, String> {
        let raw: ReconcileFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let err = |field: &str, reason: String| TenantError {
            file: "berlin.toml".into(),
            field: field.into(),
            reason,
        };
        build(raw, &err).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_both_triggers_and_refuses_a_loop() {
        let settings = parse("after_downtime = \"25m\"\nevery = \"24h\"").unwrap();
        assert_eq!(settings.after_downtime, Some(Duration::from_secs(1500)));
        assert_eq!(settings.every, Some(Duration::from_secs(86_400)));
        assert!(settings.is_on());
        assert!(!parse("").unwrap().is_on());
        assert!(parse("every = \"10m\"")
            .unwrap_err()
            .contains("reconcile.every"));
        assert!(parse("after_downtime = \"0s\"")
            .unwrap_err()
            .contains("reconcile.after_downtime"));
        assert!(parse("evry = \"24h\"").is_err(), "a typo is refused");
    }
}
