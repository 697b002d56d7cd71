//! The config center: versioned keys, watches, typed values.
