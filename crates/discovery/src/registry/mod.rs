//! The service registry: instances register with a time to live, and
//! callers discover and watch them.
