//! [`Weighted`]: an endpoint service with its weight.

use std::task::{Context, Poll};

use tower_service::Service;

/// An endpoint's service with the weight it should get, for
/// [`Balance::weight_by`](crate::Balance::weight_by) (for example built
/// from a discovered instance's weight).
#[derive(Debug, Clone)]
pub struct Weighted<S> {
    service: S,
    weight: u32,
}

impl<S> Weighted<S> {
    /// `service` with `weight` (0 is taken as 1 by the balancer).
    pub fn new(service: S, weight: u32) -> Self {
        Self { service, weight }
    }

    /// The weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The service.
    pub fn into_inner(self) -> S {
        self.service
    }
}

impl<S: Service<Req>, Req> Service<Req> for Weighted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.service.call(req)
    }
}
