//! Hot reload of `tenants/`: a change in the directory (or SIGHUP) reloads it within a
//! fraction of a second; bursts of file events (an editor's save is several) become one reload.

use std::sync::Arc;
use std::time::Duration;

use actix_web::rt::task::JoinHandle;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::studios::Studios;

/// Quiet time after the last file event before reloading.
const SETTLE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops watching.
pub struct Reloader {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Reloader {
    pub fn start(studios: Arc<Studios>) -> notify::Result<Reloader> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher({
            let tx = tx.clone();
            move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            }
        })?;
        watcher.watch(studios.dir(), RecursiveMode::NonRecursive)?;
        let task = actix_web::rt::spawn(async move {
            let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
            let mut hangup = match hangup {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP");
                    None
                }
            };
            loop {
                tokio::select! {
                    changed = rx.recv() => if changed.is_none() { return },
                    _ = async { match hangup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                        tracing::info!("SIGHUP: reloading tenants");
                    }
                }
                // Let the burst finish, then reload once.
                loop {
                    match tokio::time::timeout(SETTLE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let studios = studios.clone();
                match actix_web::rt::task::spawn_blocking(move || studios.reload()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!("{e}; keeping the running studios"),
                    Err(e) => tracing::error!(error = %e, "reload task failed"),
                }
            }
        });
        drop(tx);
        Ok(Reloader {
            _watcher: watcher,
            task,
        })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
