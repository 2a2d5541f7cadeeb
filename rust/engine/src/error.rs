//! The errors that keep an execution (or a live context's call) from running at all. What a
//! script does wrong is never one of them: that is in its [`crate::Outcome`].

use crate::envelope::EnvelopeError;

#[derive(Debug)]
pub enum EngineError {
    Init(String),
    Snapshot(EnvelopeError),
    Internal(String),
    /// A live context that is closed (a run went over its heap cap, or it was closed).
    Closed(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Init(m) => write!(f, "V8 initialisation failed: {m}"),
            EngineError::Snapshot(e) => write!(f, "{e}"),
            EngineError::Internal(m) => write!(f, "engine error: {m}"),
            EngineError::Closed(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for EngineError {}
