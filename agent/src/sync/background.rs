//! State writes that run on a thread of their own while the sync goes on
//! with the next batch: the store's writes cost the agent as much as
//! everything else it does per record, and they need not wait for it.

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
