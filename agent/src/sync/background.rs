//! Work that runs on a thread of its own while the sync goes on: state
//! writes (the store's writes cost the agent as much as everything else it
//! does per record, and they need not wait for it), and the first sync's
//! reading of its next batch.

use crate::state::{State, StateBatch};
use crate::store::{StoreError, StoreResult};

use super::SyncResult;

/// A state write under way on a blocking thread, or none.
#[derive(Default)]
pub(crate) struct PendingWrite(Option<tokio::task::JoinHandle<StoreResult<()>>>);

impl PendingWrite {
    /// Starts writing `batch`, flushed. The write before must be over.
    pub(crate) fn start(&mut self, state: &State, batch: StateBatch) {
        debug_assert!(self.is_idle(), "one state write at a time");
        let state = state.clone();
        self.0 = Some(tokio::task::spawn_blocking(move || {
            state.commit(batch, true)
        }));
    }

    /// Whether no write is under way.
    pub(crate) fn is_idle(&self) -> bool {
        self.0.is_none()
    }

    /// Waits for the write under way, if there is one.
    pub(crate) async fn wait(&mut self) -> SyncResult<()> {
        let Some(write) = self.0.take() else {
            return Ok(());
        };
        match write.await {
            Ok(written) => Ok(written?),
            Err(e) => {
                Err(StoreError::Backend(format!("the state write did not finish: {e}")).into())
            }
        }
    }
}

/// Runs `here` on this thread and `apart` on a thread of its own, both to
/// the end. A first-sync batch is read and mapped while the one before is
/// copied; in one task the mapping's CPU time held back the copy's
/// statements, though they mostly wait for the database (100,000 rows
/// MariaDB -> PostgreSQL: 2.97 -> 2.62 s). Elsewhere than on a multi-thread
/// runtime (tests) the two take turns in one task.
///
/// The runtime's other tasks go on meanwhile (`block_in_place` hands this
/// worker's queue to another), but this future cannot be cancelled until
/// both have ended.
pub(crate) async fn join_apart<H, A>(here: H, apart: A) -> (H::Output, A::Output)
where
    H: std::future::Future,
    A: std::future::Future + Send,
    A::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    use tracing::Instrument;

    let handle = Handle::current();
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return tokio::join!(here, apart);
    }
    let apart = apart.in_current_span();
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let other = scope.spawn(|| handle.block_on(apart));
            let mine = handle.block_on(here);
            let theirs = other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (mine, theirs)
        })
    })
}
