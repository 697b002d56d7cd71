//! [`StaticRegistry`]: a fixed list of instances.

use std::sync::Arc;

use super::list::{self, by_service, check_unique};
use super::source::{Source, read_only_registry};
use super::{Instance, SourceError};
use crate::config::Format;

/// A registry of a fixed list of instances, given in code or parsed from a
/// TOML or JSON [list](super::list).
///
/// It is read-only: [`register`](super::Registry::register),
/// [`heartbeat`](super::Registry::heartbeat) and
/// [`deregister`](super::Registry::deregister) fail with
/// [`RegistryError::ReadOnly`](super::RegistryError::ReadOnly).
/// [`set_health`](super::Registry::set_health) works (an active health
/// checker's findings, kept in memory over the list), and
/// [`watch`](super::Registry::watch) gives the list as inserts (revisions
/// 1, 2, ... by service, then id) and then the health changes. Clones share the
/// registry; when the last one is dropped, every watch ends.
///
/// ```
/// use rampart_discovery::config::Format;
/// use rampart_discovery::registry::{Registry, ServiceName, StaticRegistry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = StaticRegistry::parse(r#"
///     [[instance]]
///     id = "orders-1"
///     service = "shop/orders"
///     address = "10.0.0.7"
///     port = 8080
/// "#, Format::Toml)?;
/// let orders: ServiceName = "shop/orders".parse()?;
/// assert_eq!(registry.discover(&orders).await?.instances[0].authority(), "10.0.0.7:8080");
///
/// // an invalid entry is refused, naming it
/// let err = StaticRegistry::parse("[[instance]]\nid = \"x\"\nservice = \"s\"\naddress = \"a b\"\nport = 1", Format::Toml)
///     .unwrap_err();
/// assert!(err.to_string().starts_with("static list, entry 1 (line 1, id \"x\")"), "{err}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StaticRegistry {
    source: Arc<Source>,
}

/// How the errors of a static list name where it came from.
const ORIGIN: &str = "static list";

impl StaticRegistry {
    /// A registry of `instances`. Two instances of the same service and id
    /// are refused with [`SourceError::Entry`] naming the second.
    pub fn new(instances: impl IntoIterator<Item = Instance>) -> Result<Self, SourceError> {
        let instances: Vec<Instance> = instances.into_iter().collect();
        check_unique(&instances, ORIGIN, &[])?;
        Ok(Self::of(instances))
    }

    /// A registry of the instances listed in `text` (see the
    /// [list format](super::list)). Text that is not a list is
    /// [`SourceError::Syntax`]; an invalid or duplicate entry is
    /// [`SourceError::Entry`] naming its position, line and id.
    pub fn parse(text: &str, format: Format) -> Result<Self, SourceError> {
        Ok(Self::of(list::parse(text, format, ORIGIN)?))
    }

    fn of(instances: Vec<Instance>) -> Self {
        let source = Source::new("");
        source.lock().replace_all(by_service(instances));
        Self {
            source: Arc::new(source),
        }
    }

    /// The revision of the latest change: the number of instances listed,
    /// plus one per health change since.
    pub fn revision(&self) -> u64 {
        self.source.lock().revision()
    }

    fn source(&self) -> &Source {
        &self.source
    }
}

read_only_registry!(StaticRegistry, "static");
