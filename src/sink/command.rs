//! Command sink: runs the partner's program with the event JSON on stdin; exit 0 = delivered.
//! Every failure is transient: no exit code means "never send this again", and what keeps
//! failing still becomes a dead letter after `dead_letter_after`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::failure::Failure;

/// The exit code by which a program refuses an event for good (sysexits.h).
const EX_DATAERR: i32 = 65;

/// The only variables a command inherits from the relay.
const INHERITED: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

pub struct CommandSink {
    argv: Vec<String>,
    timeout: Duration,
}

impl CommandSink {
    pub fn new(argv: Vec<String>, timeout: Duration) -> CommandSink {
        CommandSink { argv, timeout }
    }

    pub async fn deliver(&self, event_id: &str, body: &[u8]) -> Result<(), Failure> {
        let program = &self.argv[0];
        // A clean environment: the relay's own holds other studios' `*_env` secrets.
        let mut command = Command::new(program);
        command.args(&self.argv[1..]).env_clear();
        for name in INHERITED {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        let mut child = command
            .env("GYMRELAY_EVENT_ID", event_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Failure::transient(format!("cannot start {program}: {e}")))?;
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A program that exits without reading stdin is its own business; its exit code decides.
                let _ = stdin.write_all(body).await;
            }
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr).await;
            }
            let status = child.wait().await;
            (status, stderr)
        };
        match tokio::time::timeout(self.timeout, run).await {
            Err(_) => Err(Failure::transient(format!(
                "{program} did not finish within {:?}",
                self.timeout
            ))),
            Ok((Err(e), _)) => Err(Failure::transient(format!("{program}: {e}"))),
            Ok((Ok(status), _)) if status.success() => Ok(()),
            Ok((Ok(status), stderr)) => {
                // What the program printed may repeat the event, a member's data included: it
                // goes to the debug log, never into the failure that is stored and shown.
                let tail: String = stderr
                    .trim()
                    .chars()
                    .rev()
                    .take(200)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                if !tail.is_empty() {
                    tracing::debug!(%program, %status, stderr = %tail, "command sink failed");
                }
                let reason = format!(
                    "{program} exited with {status} (its stderr is logged at debug level only)"
                );
                // EX_DATAERR from sysexits.h: the program says this event is wrong, so sending
                // it again cannot help, as with an http sink's 4xx.
                if status.code() == Some(EX_DATAERR) {
                    Err(Failure::permanent(reason))
                } else {
                    Err(Failure::transient(reason))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(script: &str) -> Result<(), Failure> {
        let argv = vec!["sh".into(), "-c".into(), script.into()];
        CommandSink::new(argv, Duration::from_secs(10))
            .deliver("e1", b"{}")
            .await
    }

    #[actix_rt::test]
    async fn exit_65_refuses_for_good_and_other_failures_are_retried() {
        assert_eq!(run("cat >/dev/null").await, Ok(()));
        assert!(matches!(
            run("exit 65").await,
            Err(Failure::Permanent { .. })
        ));
        let Err(Failure::Transient { reason, .. }) =
            run("echo member@example.com >&2; exit 1").await
        else {
            panic!("exit 1 is retried");
        };
        assert!(!reason.contains("member@example.com"), "{reason}");
    }
}
