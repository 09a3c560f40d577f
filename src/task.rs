//! Tasks of the runtime, awaited as if they had run in place.

use std::future::Future;
use std::panic::resume_unwind;
use tokio::task::JoinError;

/// A joined task's output, with its panic unwinding on in the caller (as it would have, had it
/// run in place); a task cancelled stays an error.
pub fn unwound<T>(joined: Result<T, JoinError>) -> Result<T, JoinError> {
    joined.map_err(|e| match e.try_into_panic() {
        Ok(panic) => resume_unwind(panic),
        Err(cancelled) => cancelled,
    })
}

/// Runs `future` as a task of the runtime and awaits it: on a worker rather than the thread
/// that called (a binary's `main` is outside the workers, and every wake-up a worker sends it
/// is a system call: a tenth of the machine's time in a replay's profile, docs/benchmarks.md).
pub async fn on_worker<F>(future: F) -> Result<F::Output, JoinError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    unwound(tokio::spawn(future).await)
}
