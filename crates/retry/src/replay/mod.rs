//! Replaying HTTP requests whose body is not `Clone`: buffer the body up to
//! a limit, send larger bodies once.

mod body;
mod error;
mod layer;
mod service;

pub use self::body::ReplayBody;
pub use self::error::{BodyReadError, BodyTaken};
pub use self::layer::{ReplayBodyConfig, ReplayBodyLayer};
pub use self::service::{ReplayBodyService, ReplayFuture};

/// Marks a request that must not be sent again.
///
/// [`ReplayBodyService`] puts it in the extensions of a request whose body
/// was over the limit, and [`HttpRequests`](crate::HttpRequests) never
/// replays a request that carries it. Insert it yourself to keep a request
/// from being retried (the replay layer then does not buffer its body
/// either). A custom [`ReplayPolicy`](crate::ReplayPolicy) for HTTP should
/// honour it too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotReplayable;
