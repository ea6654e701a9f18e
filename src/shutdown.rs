//! The one stop signal every long-running task of the daemon watches.
//!
//! An owner makes a pair with [`channel`]: it keeps the [`Stop`] and hands a [`Shutdown`] (a
//! cheap clone) to each task it starts. A task is asked to stop when the owner calls
//! [`Stop::stop`] *or* drops its `Stop` without calling it — an owner that is gone can no longer
//! wait for its tasks, so they must not outlive it silently.
//!
//! Threads poll [`Shutdown::is_stopped`] between steps; async tasks race their work against
//! [`Shutdown::stopped`] in a `select!`.

use std::sync::Arc;

use tokio::sync::watch;

/// Makes a stop signal: the owner's [`Stop`] and the [`Shutdown`] its tasks watch.
pub fn channel() -> (Stop, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Stop(tx), Shutdown { rx, _keep: None })
}

/// The owner's side of a stop signal. Dropping it stops the tasks too.
#[derive(Debug)]
pub struct Stop(watch::Sender<bool>);

impl Stop {
    /// Asks every task watching this signal to stop. Idempotent.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Another [`Shutdown`] for a task started later.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.0.subscribe(),
            _keep: None,
        }
    }
}

/// A task's side of a stop signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// The sender of a signal nobody can raise ([`Shutdown::never`]), kept so it never counts as
    /// dropped.
    _keep: Option<Arc<watch::Sender<bool>>>,
}

impl Shutdown {
    /// A signal that never stops, for work that runs to completion (`sluice replay`, tests).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            _keep: Some(Arc::new(tx)),
        }
    }

    /// True once the owner asked to stop or dropped its [`Stop`].
    pub fn is_stopped(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves once [`Shutdown::is_stopped`] would be true; at once if it already is.
    /// Cancel-safe.
    pub async fn stopped(&mut self) {
        // `wait_for` returns Err only when the sender is gone, which is a stop too.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_reaches_every_subscriber_and_a_dropped_owner_counts_as_stop() {
        let (stop, mut a) = channel();
        let mut b = stop.subscribe();
        assert!(!a.is_stopped() && !b.is_stopped());
        stop.stop();
        assert!(a.is_stopped() && b.is_stopped());
        a.stopped().await;
        b.stopped().await;

        let (stop, mut c) = channel();
        drop(stop);
        assert!(c.is_stopped());
        c.stopped().await;
    }

    #[tokio::test]
    async fn never_stays_running_when_every_clone_is_dropped_but_one() {
        let never = Shutdown::never();
        let mut copy = never.clone();
        drop(never);
        assert!(!copy.is_stopped());
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), copy.stopped()).await;
        assert!(waited.is_err(), "a never-stopping signal resolved");
    }
}
