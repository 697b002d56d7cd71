//! [`SqlStoreConfig`]: where the log lives and how it is written.

use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use serde::Deserialize;

use super::{ConnectError, SqlTxStore};

/// The settings of a [`SqlTxStore`].
///
/// Deserializes from TOML with every field optional, durations as `"5s"`
/// (an integer is milliseconds) and unknown keys refused:
///
/// ```
/// use rampart_transaction::store::SqlStoreConfig;
/// use std::time::Duration;
///
/// let config: SqlStoreConfig = toml::from_str(r#"
///     url = "postgres://app@db.internal/orders"
///     schema = "payments_tx"
///     pool_size = 16
///     connect_timeout = "2s"
///     max_batch = 64
/// "#).unwrap();
/// assert_eq!(config, SqlStoreConfig::new("postgres://app@db.internal/orders")
///     .schema("payments_tx")
///     .pool_size(16)
///     .connect_timeout(Duration::from_secs(2))
///     .max_batch(64));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlStoreConfig {
    pub(super) url: String,
    pub(super) schema: Option<String>,
    pub(super) name: String,
    pub(super) pool_size: u32,
    #[serde(with = "rampart_core::duration")]
    pub(super) connect_timeout: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(super) busy_timeout: Duration,
    pub(super) max_batch: usize,
}

impl Default for SqlStoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://rampart-tx.db".to_owned(),
            schema: None,
            name: String::new(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            max_batch: 128,
        }
    }
}

/// The database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl SqlStoreConfig {
    /// The defaults, with the log at `url`: `sqlite://PATH` (a file,
    /// created if missing; `sqlite:///abs/path` for an absolute path) or
    /// `postgres://user@host:port/db`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Where the log lives. Defaults to `"sqlite://rampart-tx.db"` (a file
    /// in the working directory).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// PostgreSQL only: the schema holding the log's tables, created if
    /// missing; every query runs in it. Lowercase letters, digits and `_`,
    /// not starting with a digit, at most 63 bytes. Defaults to none (the
    /// connection's `search_path`, usually `public`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The store's name, put on every metric as the `name` label and on
    /// every tracing event. Defaults to `""` (no label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most connections the store opens. The group-commit writer keeps
    /// one of them (with a pool of one, it takes it for each batch and
    /// gives it back). Defaults to 8.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    /// How long connecting (and waiting for a pooled connection) may take
    /// before a call fails with [`StoreError::Unavailable`](super::super::StoreError::Unavailable).
    /// Defaults to 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// SQLite only: how long a statement waits for a lock another
    /// connection or process holds on the file before failing. Defaults to
    /// 5 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Group commit: the most concurrent `create`/`commit` writes applied
    /// in one database transaction. 1 turns batching off. Defaults to 128.
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max;
        self
    }

    /// Checks the settings, naming the first field at fault: a `url` that
    /// is neither `sqlite://` nor `postgres://` (or names an engine this
    /// build leaves out), a `schema` with SQLite or one that is not a plain
    /// identifier, a zero `pool_size`, `connect_timeout`, `busy_timeout` or
    /// `max_batch`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let dialect = self.dialect()?;
        if let Some(schema) = &self.schema {
            if dialect == Dialect::Sqlite {
                return Err(ConfigError::new(
                    "schema",
                    "is for PostgreSQL only (a SQLite file has one schema)",
                ));
            }
            check_schema(schema)?;
        }
        validate::non_zero("pool_size", self.pool_size)?;
        validate::non_zero_duration("connect_timeout", self.connect_timeout)?;
        validate::non_zero_duration("busy_timeout", self.busy_timeout)?;
        validate::non_zero("max_batch", self.max_batch as u64)?;
        Ok(())
    }

    /// Validates the settings, connects, and brings the schema up to date;
    /// see [`SqlTxStore::connect`].
    pub async fn connect(self) -> Result<SqlTxStore, ConnectError> {
        SqlTxStore::connect(self).await
    }

    pub(super) fn dialect(&self) -> Result<Dialect, ConfigError> {
        let (dialect, feature) = if self.url.starts_with("sqlite:") {
            (Dialect::Sqlite, "sqlite")
        } else if self.url.starts_with("postgres://") || self.url.starts_with("postgresql://") {
            (Dialect::Postgres, "postgres")
        } else {
            return Err(ConfigError::new(
                "url",
                "must start with sqlite:// or postgres://",
            ));
        };
        let built = match dialect {
            Dialect::Sqlite => cfg!(feature = "sqlite"),
            Dialect::Postgres => cfg!(feature = "postgres"),
        };
        if built {
            Ok(dialect)
        } else {
            Err(ConfigError::new(
                "url",
                format!(
                    "names an engine this build leaves out: enable the `{feature}` feature of rampart-transaction"
                ),
            ))
        }
    }
}

fn check_schema(schema: &str) -> Result<(), ConfigError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "schema",
            format!(
                "must be 1 to 63 of a-z, 0-9 and '_', not starting with a digit, got {schema:?}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_field() {
        let field = |c: SqlStoreConfig| c.validate().unwrap_err().field();
        assert_eq!(field(SqlStoreConfig::new("mysql://x")), "url");
        assert_eq!(
            field(SqlStoreConfig::new("sqlite://x.db").schema("s")),
            "schema"
        );
        assert_eq!(
            field(SqlStoreConfig::new("postgres://h/db").schema("Bad-Name")),
            "schema"
        );
        assert_eq!(
            field(SqlStoreConfig::new("postgres://h/db").schema("1abc")),
            "schema"
        );
        assert_eq!(
            field(SqlStoreConfig::new("sqlite://x").pool_size(0)),
            "pool_size"
        );
        assert_eq!(
            field(SqlStoreConfig::new("sqlite://x").connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            field(SqlStoreConfig::new("sqlite://x").busy_timeout(Duration::ZERO)),
            "busy_timeout"
        );
        assert_eq!(
            field(SqlStoreConfig::new("sqlite://x").max_batch(0)),
            "max_batch"
        );
        assert!(SqlStoreConfig::default().validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<SqlStoreConfig>("url = \"sqlite://x\"\nbatch = 3").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
