//! The errors of body replay.

use std::fmt;

use rampart_core::BoxError;

/// Reading the request body failed while it was being buffered for replay.
///
/// The inner service was not called: no request went out with a partial
/// body. [`source`](std::error::Error::source) is the body's own error.
#[derive(Debug)]
pub struct BodyReadError {
    pub(crate) buffered: usize,
    pub(crate) source: BoxError,
}

impl BodyReadError {
    /// How many bytes of the body had been read when it failed.
    pub fn buffered(&self) -> usize {
        self.buffered
    }
}

impl fmt::Display for BodyReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reading the request body failed after {} bytes",
            self.buffered
        )
    }
}

impl std::error::Error for BodyReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A copy of a request body that was too large to buffer was polled after
/// another copy had taken the body.
///
/// Such a body is sent once. Its clones yield this error as their first
/// frame instead of an empty or partial body, so a replay that should not
/// have been made fails rather than sending something different.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyTaken;

impl fmt::Display for BodyTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body over the replay limit was already sent once")
    }
}

impl std::error::Error for BodyTaken {}
