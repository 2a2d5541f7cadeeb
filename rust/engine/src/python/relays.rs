//! What the fetch and tool relays share: the inbox of the one execution a relay serves.

use super::*;

/// The inbox of the execution a relay is attached to; `None` between executions.
#[derive(Default)]
pub(super) struct RelaySlot(Arc<Mutex<Option<Arc<Replies>>>>);

/// The relay's execution: detaches it when dropped, so later replies are dropped.
pub(super) struct Attached(pub(super) Arc<Replies>, Arc<Mutex<Option<Arc<Replies>>>>);

impl Drop for Attached {
    fn drop(&mut self) {
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl RelaySlot {
    /// Attaches the relay to an execution's inbox; an error while another execution has it.
    pub(super) fn attach(&self, inbox: &Arc<Replies>, what: &str) -> PyResult<Attached> {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_some() {
            return Err(PyRuntimeError::new_err(format!(
                "the {what} relay is in use by another execution"
            )));
        }
        *current = Some(inbox.clone());
        Ok(Attached(inbox.clone(), self.0.clone()))
    }

    /// The inbox of the execution in progress, if any.
    pub(super) fn current(&self) -> Option<Arc<Replies>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
