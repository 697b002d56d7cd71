//! [`Instance`], [`ServiceName`] and [`HealthStatus`]: what a registry stores,
//! validated when built or decoded.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The namespace a [`ServiceName`] written without one belongs to.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The group a [`ServiceName`] written without one belongs to.
pub const DEFAULT_GROUP: &str = "default";

/// The longest namespace, group or service segment accepted.
const MAX_SEGMENT: usize = 128;

/// Why an [`Instance`] or a [`ServiceName`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstanceError {
    /// The instance id is empty.
    EmptyId,
    /// The service name is malformed.
    InvalidService {
        /// The name as given.
        service: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The address is neither an IP address nor a valid DNS host name.
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The port is 0.
    ZeroPort,
}

impl fmt::Display for InstanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyId => f.write_str("invalid instance: empty id"),
            Self::InvalidService { service, reason } => {
                write!(f, "invalid instance: service {service:?} {reason}")
            }
            Self::InvalidAddress { address, reason } => {
                write!(f, "invalid instance: address {address:?} {reason}")
            }
            Self::ZeroPort => f.write_str("invalid instance: port 0"),
        }
    }
}

impl std::error::Error for InstanceError {}

/// A service's full name: `namespace/group/service`.
///
/// Written as one string with one to three `/`-separated segments:
/// `"orders"` is `default/default/orders`, `"payments/orders"` is
/// `default/payments/orders` (group `payments`), and
/// `"prod/payments/orders"` names all three. Each segment is 1 to 128
/// characters of ASCII letters, digits, `.`, `_`, `-` and `:`. Two names
/// are the same service exactly when all three segments are equal, so
/// `"orders"` and `"default/default/orders"` are one service. It displays
/// and serializes in the full three-segment form.
///
/// ```
/// use rampart_discovery::registry::ServiceName;
///
/// let name: ServiceName = "payments/orders".parse().unwrap();
/// assert_eq!((name.namespace(), name.group(), name.service()), ("default", "payments", "orders"));
/// assert_eq!(name.to_string(), "default/payments/orders");
/// assert!("a//b".parse::<ServiceName>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName {
    namespace: String,
    group: String,
    service: String,
}

impl ServiceName {
    /// Parses `service`, `group/service` or `namespace/group/service`.
    pub fn new(name: &str) -> Result<Self, InstanceError> {
        let invalid = |reason| InstanceError::InvalidService {
            service: name.to_owned(),
            reason,
        };
        let segments: Vec<&str> = name.split('/').collect();
        for s in &segments {
            if s.is_empty() {
                return Err(invalid("has an empty segment"));
            }
            if s.len() > MAX_SEGMENT {
                return Err(invalid("has a segment longer than 128 characters"));
            }
            if !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
            {
                return Err(invalid(
                    "may only hold ASCII letters, digits, '.', '_', '-', ':' and '/' between segments",
                ));
            }
        }
        let (namespace, group, service) = match segments.as_slice() {
            [s] => (DEFAULT_NAMESPACE, DEFAULT_GROUP, *s),
            [g, s] => (DEFAULT_NAMESPACE, *g, *s),
            [n, g, s] => (*n, *g, *s),
            _ => return Err(invalid("has more than three '/'-separated segments")),
        };
        Ok(Self {
            namespace: namespace.to_owned(),
            group: group.to_owned(),
            service: service.to_owned(),
        })
    }

    /// The namespace (`"default"` unless given).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The group (`"default"` unless given).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The service's own name, the last segment.
    pub fn service(&self) -> &str {
        &self.service
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.group, self.service)
    }
}

impl FromStr for ServiceName {
    type Err = InstanceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ServiceName {
    type Error = InstanceError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl TryFrom<&str> for ServiceName {
    type Error = InstanceError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<ServiceName> for String {
    fn from(name: ServiceName) -> Self {
        name.to_string()
    }
}

/// Whether an instance should receive traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Passing its checks, or registered without any (the default).
    #[default]
    Healthy,
    /// Failing its checks: discovered, but not routed to.
    Unhealthy,
    /// Not checked yet: routed to, like a healthy instance.
    Unknown,
}

/// One endpoint of a service, as registered.
///
/// Built with [`Instance::new`], which refuses an empty id, a port of 0
/// and an address that is neither an IP address nor a DNS host name (RFC
/// 1123 labels of letters, digits and `-`, at most 253 characters), then
/// refined with the consuming setters. Deserializing runs the same checks,
/// so an invalid instance cannot exist.
///
/// ```
/// use rampart_discovery::registry::{HealthStatus, Instance};
///
/// let i = Instance::new("orders-1", "shop/orders", "10.0.0.7", 8080)?
///     .with_weight(5)
///     .with_zone("eu-west-1a")
///     .with_metadata("version", "1.4.2");
/// assert_eq!(i.service().to_string(), "default/shop/orders");
/// assert_eq!(i.health(), HealthStatus::Healthy);
/// assert!(Instance::new("orders-2", "orders", "bad host!", 8080).is_err());
/// # Ok::<(), rampart_discovery::registry::InstanceError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawInstance")]
pub struct Instance {
    id: String,
    service: ServiceName,
    address: String,
    port: u16,
    weight: u32,
    zone: Option<String>,
    metadata: BTreeMap<String, String>,
    health: HealthStatus,
}

/// The decoded form of an [`Instance`], before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstance {
    id: String,
    service: String,
    address: String,
    port: u16,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    health: HealthStatus,
}

fn default_weight() -> u32 {
    1
}

impl TryFrom<RawInstance> for Instance {
    type Error = InstanceError;

    fn try_from(raw: RawInstance) -> Result<Self, Self::Error> {
        let mut i = Instance::new(raw.id, &raw.service, raw.address, raw.port)?
            .with_weight(raw.weight)
            .with_health(raw.health);
        i.zone = raw.zone;
        i.metadata = raw.metadata;
        Ok(i)
    }
}

impl Instance {
    /// An instance `id` of `service` (see [`ServiceName`] for the forms)
    /// at `address:port`, with weight 1, no zone, no metadata and
    /// [`HealthStatus::Healthy`].
    pub fn new(
        id: impl Into<String>,
        service: &str,
        address: impl Into<String>,
        port: u16,
    ) -> Result<Self, InstanceError> {
        let id = id.into();
        if id.is_empty() {
            return Err(InstanceError::EmptyId);
        }
        let service = ServiceName::new(service)?;
        let address = address.into();
        validate_address(&address)?;
        if port == 0 {
            return Err(InstanceError::ZeroPort);
        }
        Ok(Self {
            id,
            service,
            address,
            port,
            weight: default_weight(),
            zone: None,
            metadata: BTreeMap::new(),
            health: HealthStatus::Healthy,
        })
    }

    /// Sets the relative weight for load balancing; 0 drains the instance
    /// (discovered, but not routed to). Defaults to 1.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the zone (availability zone, rack, region). Defaults to none.
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Adds one metadata entry, replacing an earlier value of `key`.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the health status. Defaults to [`HealthStatus::Healthy`].
    pub fn with_health(mut self, health: HealthStatus) -> Self {
        self.health = health;
        self
    }

    /// The instance id, unique within its service.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The service it belongs to.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The host: an IP address or a DNS name.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The port (never 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, with an IPv6 address in brackets (`[::1]:8080`), as a
    /// URI authority or a socket address string wants it.
    pub fn authority(&self) -> String {
        if self.address.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }

    /// The relative weight (0: drained).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The zone, if set.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// All metadata entries.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The health status.
    pub fn health(&self) -> HealthStatus {
        self.health
    }

    /// Whether a balancer should route to it: not
    /// [`Unhealthy`](HealthStatus::Unhealthy) and a weight above 0.
    pub fn is_routable(&self) -> bool {
        self.health != HealthStatus::Unhealthy && self.weight > 0
    }
}

/// An IP address, or a DNS host name of RFC 1123 labels.
fn validate_address(address: &str) -> Result<(), InstanceError> {
    let invalid = |reason| InstanceError::InvalidAddress {
        address: address.to_owned(),
        reason,
    };
    if address.is_empty() {
        return Err(invalid("is empty"));
    }
    // a bracketed IPv6 literal is accepted as the bare address would be
    let bare = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let host = address.strip_suffix('.').unwrap_or(address);
    if host.len() > 253 {
        return Err(invalid("is longer than 253 characters"));
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid(
                "has a DNS label that is empty or longer than 63 characters",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "is not an IP address and holds characters a host name may not (letters, digits, '-' and '.')",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("has a DNS label that starts or ends with '-'"));
        }
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid("looks like an IP address but is not a valid one"));
    }
    Ok(())
}
