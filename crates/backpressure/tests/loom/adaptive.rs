//! Model checks of the adaptive concurrency limit.
