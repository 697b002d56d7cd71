//! Model checks of the GCRA rate limiter and the queue.
