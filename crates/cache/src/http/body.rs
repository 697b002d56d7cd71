//! The body limit rule: which response bodies a cache collects.

use http::header::CONTENT_LENGTH;
use http::response;

use crate::http::HttpCachePolicy;
use crate::http::RequestFacts;

/// What a cache layer does with a storable response's body, decided
/// before reading any of it by [`HttpCachePolicy::body_plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Collect the body while forwarding nothing, up to `limit` bytes of
    /// data. If it ends within the limit, store the response and answer
    /// the caller with the collected body. If it grows past the limit, the
    /// response is not stored: the caller gets the bytes collected so far
    /// followed by the rest of the body as it streams (never truncated,
    /// never buffered beyond `limit`).
    Collect {
        /// The most data bytes collected.
        limit: usize,
    },
    /// Known to be larger than the limit (by `Content-Length` or the
    /// body's size hint): pass it through unread and do not store it.
    PassThrough,
}

// === impl HttpCachePolicy: bodies ===

impl HttpCachePolicy {
    /// The body rule for a response the policy would store: collect up to
    /// `max_body_bytes`, or pass through a body already known to be larger.
    ///
    /// `size_hint_lower` is the lower bound of the body's
    /// `http_body::Body::size_hint` (0 when unknown). `Content-Length` is
    /// believed when it parses; a response to `HEAD` carries no body
    /// whatever its `Content-Length` says, so it is always collected (as
    /// nothing).
    pub fn body_plan(
        &self,
        req: impl Into<RequestFacts>,
        res: &response::Parts,
        size_hint_lower: u64,
    ) -> BodyPlan {
        let limit = self.max_body_bytes;
        if req.into().is_head() {
            return BodyPlan::Collect { limit };
        }
        let declared = res
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if declared.max(size_hint_lower) > limit as u64 {
            BodyPlan::PassThrough
        } else {
            BodyPlan::Collect { limit }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(content_length: Option<&str>) -> response::Parts {
        let mut b = http::Response::builder();
        if let Some(len) = content_length {
            b = b.header("content-length", len);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn plans() {
        let policy = HttpCachePolicy::new().max_body_bytes(10);
        let get = http::Request::get("/").body(()).unwrap();
        let head = http::Request::head("/").body(()).unwrap();
        let collect = BodyPlan::Collect { limit: 10 };
        assert_eq!(policy.body_plan(&get, &res(None), 0), collect);
        assert_eq!(policy.body_plan(&get, &res(Some("10")), 0), collect);
        assert_eq!(
            policy.body_plan(&get, &res(Some("11")), 0),
            BodyPlan::PassThrough
        );
        assert_eq!(
            policy.body_plan(&get, &res(None), 11),
            BodyPlan::PassThrough
        );
        assert_eq!(policy.body_plan(&get, &res(Some("bogus")), 0), collect);
        assert_eq!(policy.body_plan(&head, &res(Some("999999")), 0), collect);
    }
}
