//! Fetches the cache runs for itself rather than for a reader: the prefetch of the config file's
//! entries and refresh-ahead. Each batch of them is a `Background` handle, so the lifecycle can
//! wait for exactly that work before the environment may freeze, and cancel exactly that work
//! when it overruns, without touching a fetch a function's read is waiting on.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::flight::{Flight, wait};
use crate::upstream::{FetchError, backoff};

pub(super) type Done = Pin<Box<dyn Future<Output = Result<(), FetchError>> + Send>>;

pub(super) struct Item {
    /// What it fetches, for logs and init errors (an id or a path; never a value).
    pub(super) label: String,
    pub(super) required: bool,
    pub(super) done: Done,
}

/// A set of fetches started together, and the token that cancels the ones it launched.
pub struct Background {
    pub(super) items: Vec<Item>,
    cancel: CancellationToken,
    /// Items `required` already waited for and loaded: the final report counts them too.
    loaded_earlier: usize,
}

/// How a `Background` ended.
#[derive(Debug, Default)]
pub struct Report {
    pub loaded: usize,
    /// (label, error, required)
    pub failed: Vec<(String, FetchError, bool)>,
    /// Items still running at the bound, cancelled so nothing is in flight at a freeze.
    pub cancelled: usize,
}

impl Report {
    pub fn required_failures(&self) -> impl Iterator<Item = &(String, FetchError, bool)> {
        self.failed.iter().filter(|(_, _, required)| *required)
    }

    /// One line for the whole prefetch, one per failed item (ids and error codes only).
    pub fn log(&self, what: &str) {
        for (item, error, required) in &self.failed {
            tracing::warn!(item = %crate::escape::escaped(item), error = error.code(), required, "{what} failed");
        }
        tracing::info!(
            loaded = self.loaded,
            failed = self.failed.len(),
            cancelled = self.cancelled,
            "{what} finished"
        );
    }

    fn add(&mut self, label: String, required: bool, result: Result<(), FetchError>) {
        match result {
            Ok(()) => self.loaded += 1,
            Err(e) => self.failed.push((label, e, required)),
        }
    }
}

impl Background {
    pub(super) fn new(cancel: CancellationToken) -> Background {
        Background {
            items: Vec::new(),
            cancel,
            loaded_earlier: 0,
        }
    }

    pub(super) fn push_flight(&mut self, label: String, required: bool, flight: Flight) {
        self.items.push(Item {
            label,
            required,
            done: Box::pin(async move { wait(flight).await.map(drop) }),
        });
    }

    /// Items not waited for yet.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// What `required` already waited for, as the start of the whole report.
    fn earlier(&self) -> Report {
        Report {
            loaded: self.loaded_earlier,
            ..Report::default()
        }
    }

    /// Waits for the items marked `required` (they decide whether init succeeds) and leaves
    /// the others running.
    pub async fn required(&mut self) -> Report {
        let (required, rest) = std::mem::take(&mut self.items).into_iter().partition(|i| i.required);
        self.items = rest;
        let mut report = Report::default();
        for item in required {
            let result = item.done.await;
            report.add(item.label, true, result);
        }
        self.loaded_earlier += report.loaded;
        report
    }

    /// Waits for everything, without a bound (standalone mode).
    pub async fn finish(self) -> Report {
        let mut report = self.earlier();
        for item in self.items {
            let result = item.done.await;
            report.add(item.label, item.required, result);
        }
        report
    }

    /// Waits until `deadline` for everything, then cancels what is left (it ends at its next
    /// poll, within a moment): nothing this handle started is in flight afterwards. Fetches
    /// it merely joined (a reader's) are waited for but not cancelled.
    pub async fn settle(self, deadline: Instant) -> Report {
        let mut report = self.earlier();
        let mut items = self.items.into_iter();
        for item in items.by_ref() {
            let Item { label, required, mut done } = item;
            match tokio::time::timeout_at(deadline, &mut done).await {
                Ok(result) => report.add(label, required, result),
                Err(_) => {
                    report.cancelled += 1;
                    self.cancel.cancel();
                    // A cancelled fetch answers its waiters with an error at its next poll.
                    let _ = tokio::time::timeout(Duration::from_millis(100), done).await;
                    break;
                }
            }
        }
        for item in items {
            report.cancelled += 1;
            let _ = tokio::time::timeout(Duration::from_millis(100), item.done).await;
        }
        report
    }
}

/// Back-offs between throttled attempts of a prefetch item: full jitter from 100 ms, at most 2 s.
const THROTTLE_BASE: Duration = Duration::from_millis(100);
const THROTTLE_CAP: Duration = Duration::from_secs(2);

/// Runs `attempt` until it is not throttled, or `deadline` would pass before the next one (or
/// `cancel` fires), sleeping a full-jitter back-off in between: throttling during a fleet's
/// burst is waited out, not turned into a failed Init. The error it gives up with says so.
pub(super) async fn while_throttled<T, F, A>(deadline: Instant, cancel: &CancellationToken, mut attempt: A) -> Result<T, FetchError>
where
    A: FnMut() -> F,
    F: Future<Output = Result<T, FetchError>>,
{
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Err(e) if e.is_throttling() => {
                let pause = backoff(attempts, THROTTLE_BASE, THROTTLE_CAP);
                if Instant::now() + pause >= deadline {
                    return Err(gave_up(e, started.elapsed(), attempts));
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = cancel.cancelled() => return Err(e),
                }
            }
            done => return done,
        }
    }
}

/// A throttled item given up at the prefetch deadline: AWS's status and code, and how long.
fn gave_up(e: FetchError, waited: Duration, attempts: u32) -> FetchError {
    match e {
        FetchError::Service { status, code, message } => FetchError::Service {
            status,
            message: format!(
                "throttled for {:.1} s ({attempts} attempts) until the prefetch deadline (SECRETS_CACHE_PREFETCH_DEADLINE): {message}",
                waited.as_secs_f64()
            ),
            code,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttled() -> FetchError {
        FetchError::Service {
            status: 400,
            code: "ThrottlingException".into(),
            message: "Rate exceeded".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_is_waited_out_until_the_deadline() {
        let cancel = CancellationToken::new();
        let mut left = 3;
        let got = while_throttled(Instant::now() + Duration::from_secs(60), &cancel, || {
            left -= 1;
            let answer = if left > 0 { Err(throttled()) } else { Ok(7) };
            async move { answer }
        })
        .await;
        assert_eq!(got, Ok(7), "two throttled attempts, then the answer");

        let started = Instant::now();
        let mut attempts = 0;
        let got = while_throttled(started + Duration::from_secs(5), &cancel, || {
            attempts += 1;
            async { Err::<(), _>(throttled()) }
        })
        .await;
        let e = got.unwrap_err();
        assert!(e.is_throttling(), "it says it was throttling: {e}");
        assert!(e.message().contains("prefetch deadline"), "{e}");
        assert!(started.elapsed() <= Duration::from_secs(5), "never past the deadline");
        assert!((3..=40).contains(&attempts), "backed off, no storm: {attempts} attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_not_retried() {
        let cancel = CancellationToken::new();
        let mut attempts = 0;
        let got = while_throttled(Instant::now() + Duration::from_secs(60), &cancel, || {
            attempts += 1;
            async { Err::<(), _>(FetchError::item("ResourceNotFoundException", "no")) }
        })
        .await;
        assert_eq!((got.unwrap_err().code(), attempts), ("ResourceNotFoundException", 1));
    }
}
