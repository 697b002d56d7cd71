//! [`DnsRegistry`]: instances from DNS (SRV, or A and AAAA), refreshed when
//! their TTL runs out.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use rampart_core::ConfigError;
use rampart_core::error::validate;
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use super::source::{Source, read_only_registry};
use super::{Instance, ServiceName, SourceError};

/// Where one service's instances come from in DNS.
///
/// Deserializes from `{ service = "shop/orders", srv =
/// "_http._tcp.orders.svc.example." }` or `{ service = "billing", host =
/// "billing.example.", port = 8080 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawDnsService")]
pub struct DnsService {
    service: ServiceName,
    lookup: DnsLookup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DnsLookup {
    Srv(Name),
    Host(Name, u16),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnsService {
    service: ServiceName,
    #[serde(default)]
    srv: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

impl TryFrom<RawDnsService> for DnsService {
    type Error = ConfigError;

    fn try_from(raw: RawDnsService) -> Result<Self, Self::Error> {
        match (raw.srv, raw.host, raw.port) {
            (Some(srv), None, None) => Self::srv(raw.service, &srv),
            (None, Some(host), Some(port)) => Self::host(raw.service, &host, port),
            _ => Err(ConfigError::new(
                "services",
                "each service needs either `srv`, or `host` and `port`",
            )),
        }
    }
}

fn dns_name(name: &str) -> Result<Name, ConfigError> {
    let parsed = Name::from_ascii(name)
        .map_err(|e| ConfigError::new("services", format!("{name:?} is not a DNS name: {e}")))?;
    if parsed.is_root() {
        return Err(ConfigError::new(
            "services",
            format!("{name:?} is the root, not a DNS name to look up"),
        ));
    }
    Ok(parsed)
}

impl DnsService {
    /// `service`'s instances are the targets of the SRV records of `name`
    /// (`_http._tcp.orders.svc.example.`), each resolved to its A and AAAA
    /// addresses, with the SRV port. A name that is not valid is refused.
    pub fn srv(service: ServiceName, name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            service,
            lookup: DnsLookup::Srv(dns_name(name)?),
        })
    }

    /// `service`'s instances are the A and AAAA addresses of `host`, on
    /// `port`. A host that is not a valid name, or port 0, is refused.
    pub fn host(service: ServiceName, host: &str, port: u16) -> Result<Self, ConfigError> {
        validate::non_zero("services", port)?;
        Ok(Self {
            service,
            lookup: DnsLookup::Host(dns_name(host)?, port),
        })
    }

    /// The service it gives instances to.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }
}

/// The settings of a [`DnsRegistry`].
///
/// Deserializes from TOML with every field optional (but a registry needs
/// name servers), durations as `"1s"` and unknown keys refused:
///
/// ```
/// use rampart_discovery::registry::{DnsRegistryConfig, DnsService};
/// use std::time::Duration;
///
/// let config: DnsRegistryConfig = toml::from_str(r#"
///     name = "dns"
///     name_servers = ["10.0.0.53:53"]
///     min_ttl = "5s"
///     services = [
///         { service = "shop/orders", srv = "_http._tcp.orders.svc.example." },
///         { service = "billing", host = "billing.example.", port = 8080 },
///     ]
/// "#).unwrap();
/// assert_eq!(config, DnsRegistryConfig::new()
///     .name("dns")
///     .name_server("10.0.0.53:53".parse().unwrap())
///     .min_ttl(Duration::from_secs(5))
///     .service(DnsService::srv("shop/orders".parse().unwrap(), "_http._tcp.orders.svc.example.").unwrap())
///     .service(DnsService::host("billing".parse().unwrap(), "billing.example.", 8080).unwrap()));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsRegistryConfig {
    name: String,
    name_servers: Vec<SocketAddr>,
    #[serde(with = "rampart_core::duration")]
    min_ttl: Duration,
    #[serde(with = "rampart_core::duration")]
    max_ttl: Duration,
    #[serde(with = "rampart_core::duration")]
    timeout: Duration,
    #[serde(with = "rampart_core::duration")]
    retry_backoff: Duration,
    services: Vec<DnsService>,
}

impl Default for DnsRegistryConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            name_servers: Vec::new(),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
            retry_backoff: Duration::from_secs(1),
            services: Vec::new(),
        }
    }
}

impl DnsRegistryConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry's name, put on every metric as the `name` label and on
    /// every tracing event. Defaults to `""` (no label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a name server to ask (UDP, and TCP for truncated answers).
    /// Neither `/etc/resolv.conf` nor the hosts file is read: at least one
    /// name server is required.
    pub fn name_server(mut self, server: SocketAddr) -> Self {
        self.name_servers.push(server);
        self
    }

    /// The shortest time between two refreshes of a service: a shorter TTL
    /// (even 0) is raised to it. Must be longer than zero. Defaults to 1 s.
    pub fn min_ttl(mut self, ttl: Duration) -> Self {
        self.min_ttl = ttl;
        self
    }

    /// The longest time between two refreshes of a service: a longer TTL
    /// is cut to it, and so is the retry backoff. Must be at least
    /// `min_ttl`. Defaults to 5 min.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// How long one query may take before it counts as failed. Must be
    /// longer than zero. Defaults to 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The wait before the first retry of a failed lookup; it doubles with
    /// every failure in a row, up to `max_ttl`. Must be longer than zero.
    /// Defaults to 1 s.
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Adds a service to look up.
    pub fn service(mut self, service: DnsService) -> Self {
        self.services.push(service);
        self
    }

    /// Checks the settings, naming the first field at fault: no
    /// `name_servers`, a zero `min_ttl`, `timeout` or `retry_backoff`, a
    /// `max_ttl` below `min_ttl`, or a service listed twice.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name_servers.is_empty() {
            return Err(ConfigError::new(
                "name_servers",
                "must list at least one name server",
            ));
        }
        validate::non_zero_duration("min_ttl", self.min_ttl)?;
        validate::non_zero_duration("timeout", self.timeout)?;
        validate::non_zero_duration("retry_backoff", self.retry_backoff)?;
        if self.max_ttl < self.min_ttl {
            return Err(ConfigError::new(
                "max_ttl",
                format!(
                    "must be at least min_ttl ({:?}), got {:?}",
                    self.min_ttl, self.max_ttl
                ),
            ));
        }
        let mut seen = HashSet::new();
        for s in &self.services {
            if !seen.insert(&s.service) {
                return Err(ConfigError::new(
                    "services",
                    format!("service {} is listed twice", s.service),
                ));
            }
        }
        Ok(())
    }

    /// Validates the settings and starts the registry: see
    /// [`DnsRegistry::start`].
    pub async fn start(self) -> Result<DnsRegistry, SourceError> {
        DnsRegistry::start(self).await
    }
}

/// A registry whose instances come from DNS: per service, the targets of
/// an SRV name or the addresses of a host name (see [`DnsService`]).
///
/// - **SRV**: each target (in priority order; a target of `.` means "no
///   service" and is skipped) is resolved to its A and AAAA addresses;
///   each address gives an instance on the record's port, with the SRV
///   weight as its weight (0 becomes 1: RFC 2782 gives weight-0 targets a
///   small share, and instance weight 0 would drain them), and metadata
///   `srv_priority`, `srv_weight` and `srv_target`. An address given by
///   several records keeps the first (lowest priority).
/// - **Host**: each A and AAAA address gives an instance on the configured
///   port, weight 1, metadata `dns_name`.
///
/// Instance ids are `address:port` (`[::1]:8080` for IPv6), so they stay
/// the same across refreshes and a changed answer becomes inserts and
/// removes; a changed SRV weight or priority is an update.
///
/// # Refreshes
///
/// Each service is looked up again when its answer's TTL runs out (the
/// smallest TTL of the SRV and address records used), clamped to
/// [`min_ttl`](DnsRegistryConfig::min_ttl)..[`max_ttl`](DnsRegistryConfig::max_ttl),
/// on a tokio timer: there is no fixed polling interval. The resolver does
/// not cache, so each refresh asks the name servers.
///
/// # Under failure
///
/// - A lookup that fails (a timeout, `SERVFAIL`, `REFUSED`, `NXDOMAIN` for
///   the SRV name or a target) changes no instance: the last good set
///   stays live, [`Discovered::stale`](super::Discovered::stale) turns
///   true, [`SOURCE_ERRORS_TOTAL`](super::SOURCE_ERRORS_TOTAL) counts every
///   failed attempt, and the first failure of a run is sent to watchers as
///   `Err(`[`RegistryError::Source`](super::RegistryError::Source)`)`
///   and logged at `warn`. The lookup is retried after
///   [`retry_backoff`](DnsRegistryConfig::retry_backoff), doubling with
///   each failure in a row up to `max_ttl`; the first success applies its
///   answer and clears `stale`.
/// - `NXDOMAIN` is a failure because it is what a mistyped name, or a zone
///   being reloaded, answers; an empty `NOERROR` answer (the name exists
///   but has no such records) is a real answer: the service has no
///   instances, and watchers get removes. Its refresh waits the negative
///   TTL (from the SOA, clamped), or `min_ttl` without one.
/// - A service whose first lookup fails starts empty and stale, and is
///   retried as above.
///
/// It is read-only: [`register`](super::Registry::register),
/// [`heartbeat`](super::Registry::heartbeat) and
/// [`deregister`](super::Registry::deregister) fail with
/// [`RegistryError::ReadOnly`](super::RegistryError::ReadOnly);
/// [`set_health`](super::Registry::set_health) keeps the health of an
/// instance in memory over the DNS answers while they list it. Clones share
/// the registry; when the last one is dropped, the lookups stop and every
/// watch ends.
///
/// ```no_run
/// use rampart_discovery::registry::{DnsRegistry, DnsRegistryConfig, DnsService, Registry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let orders = "shop/orders".parse()?;
/// let registry = DnsRegistry::start(
///     DnsRegistryConfig::new()
///         .name_server("10.0.0.53:53".parse()?)
///         .service(DnsService::srv("shop/orders".parse()?, "_http._tcp.orders.svc.example.")?),
/// )
/// .await?;
/// for instance in registry.discover(&orders).await?.instances {
///     println!("{} weight {}", instance.authority(), instance.weight());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DnsRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: Source,
    lookups: Mutex<Vec<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for lookup in self
            .lookups
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
        {
            lookup.abort();
        }
    }
}

/// The clamps and backoff of the refresh loops.
#[derive(Debug, Clone, Copy)]
struct Timing {
    min_ttl: Duration,
    max_ttl: Duration,
    retry_backoff: Duration,
}

impl Timing {
    fn clamp(&self, ttl: Option<Duration>) -> Duration {
        ttl.unwrap_or(self.min_ttl)
            .clamp(self.min_ttl, self.max_ttl)
    }

    /// The wait after the `failures`-th failure in a row (from 1).
    fn backoff(&self, failures: u32) -> Duration {
        self.retry_backoff
            .saturating_mul(1 << failures.saturating_sub(1).min(20))
            .min(self.max_ttl)
    }
}

impl DnsRegistry {
    /// Validates `config`, builds a resolver that asks only its name
    /// servers, and starts one refresh loop per service (tasks on the
    /// current tokio runtime). Returns once every service's first lookup
    /// has finished, so the first answers are already discoverable; a
    /// first lookup that fails is not an error (see "Under failure").
    /// Bad settings are [`SourceError::Config`].
    pub async fn start(config: DnsRegistryConfig) -> Result<Self, SourceError> {
        config.validate()?;
        let resolver = Arc::new(resolver(&config)?);
        let timing = Timing {
            min_ttl: config.min_ttl,
            max_ttl: config.max_ttl,
            retry_backoff: config.retry_backoff,
        };
        let inner = Arc::new(Inner {
            source: Source::new(config.name.clone()),
            lookups: Mutex::new(Vec::new()),
        });
        let mut first = Vec::new();
        for service in config.services {
            let (tx, rx) = oneshot::channel();
            let task = tokio::spawn(refresh(
                Arc::downgrade(&inner),
                Arc::clone(&resolver),
                service,
                timing,
                tx,
            ));
            inner
                .lookups
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(task.abort_handle());
            first.push(rx);
        }
        for rx in first {
            // a dropped sender (the task ended) also means "done"
            let _ = rx.await;
        }
        Ok(Self { inner })
    }

    /// The revision of the latest change.
    pub fn revision(&self) -> u64 {
        self.inner.source.lock().revision()
    }

    fn source(&self) -> &Source {
        &self.inner.source
    }
}

read_only_registry!(DnsRegistry, "dns");

fn resolver(config: &DnsRegistryConfig) -> Result<TokioResolver, SourceError> {
    let servers = config
        .name_servers
        .iter()
        .map(|server| {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            NameServerConfig::new(server.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut options = ResolverOpts::default();
    options.timeout = config.timeout;
    options.attempts = 1;
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.num_concurrent_reqs = 1;
    Resolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .with_options(options)
    .build()
    .map_err(|e| {
        SourceError::Config(ConfigError::new(
            "name_servers",
            format!("cannot build a resolver: {e}"),
        ))
    })
}

/// One service's refresh loop: look up, apply or keep, sleep until the
/// TTL or the backoff runs out. Tells `first` when the first lookup is
/// done.
async fn refresh(
    inner: Weak<Inner>,
    resolver: Arc<TokioResolver>,
    service: DnsService,
    timing: Timing,
    first: oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut failures = 0u32;
    loop {
        let outcome = lookup(&resolver, &service).await;
        let Some(inner) = inner.upgrade() else { return };
        let wait = match outcome {
            Ok(answer) => {
                let count = answer.instances.len();
                let changes = inner
                    .source
                    .lock()
                    .replace(&service.service, answer.instances);
                if failures > 0 {
                    tracing::info!(registry = %inner.source.name(), service = %service.service, failures, "dns lookups succeed again");
                }
                failures = 0;
                let wait = timing.clamp(answer.ttl);
                tracing::debug!(registry = %inner.source.name(), service = %service.service, instances = count, changes, ?wait, "dns refreshed");
                wait
            }
            Err(error) => {
                failures += 1;
                inner.source.count_error(Some(&service.service));
                let mut snapshot = inner.source.lock();
                snapshot.mark_stale(Some(&service.service));
                let wait = timing.backoff(failures);
                if failures == 1 {
                    tracing::warn!(registry = %inner.source.name(), service = %service.service, %error, retry_in = ?wait, "dns lookup failed, last good instances kept");
                    snapshot.report(Some(&service.service), error);
                } else {
                    tracing::debug!(registry = %inner.source.name(), service = %service.service, %error, failures, retry_in = ?wait, "dns lookup failed again");
                }
                wait
            }
        };
        drop(inner);
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        tokio::time::sleep(wait).await;
    }
}

/// One lookup's result: the instances and the smallest TTL of the records
/// used (`None` when there were none).
struct Answer {
    instances: Vec<Instance>,
    ttl: Option<Duration>,
}

/// The records of `name` of type `kind`, with an empty `NOERROR` answer as
/// no records (and its negative TTL, if any), and any other failure as a
/// [`SourceError::Lookup`].
async fn records(
    resolver: &TokioResolver,
    service: &ServiceName,
    name: &Name,
    kind: RecordType,
) -> Result<(Vec<Record>, Option<Duration>), SourceError> {
    let result = match kind {
        RecordType::SRV => resolver.lookup(name.clone(), kind).await,
        _ => resolver
            .lookup_ip(name.clone())
            .await
            .map(|ips| ips.as_lookup().clone()),
    };
    match result {
        Ok(lookup) => {
            let records: Vec<Record> = lookup.answers().to_vec();
            let ttl = records
                .iter()
                .map(|r| Duration::from_secs(r.ttl.into()))
                .min();
            Ok((records, ttl))
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(none)))
            if none.response_code == ResponseCode::NoError =>
        {
            Ok((
                Vec::new(),
                none.negative_ttl.map(|t| Duration::from_secs(t.into())),
            ))
        }
        Err(e) => Err(SourceError::Lookup {
            service: service.clone(),
            name: name.to_string(),
            reason: e.to_string(),
        }),
    }
}

fn min_ttl(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn addresses(records: &[Record]) -> impl Iterator<Item = IpAddr> + '_ {
    records.iter().filter_map(|r| match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    })
}

/// Looks `service` up once.
async fn lookup(resolver: &TokioResolver, service: &DnsService) -> Result<Answer, SourceError> {
    let name = &service.service;
    let label = name.to_string();
    let make = |ip: IpAddr, port: u16| {
        let id = SocketAddr::new(ip, port).to_string();
        Instance::new(id, &label, ip.to_string(), port).map_err(|e| SourceError::Lookup {
            service: name.clone(),
            name: ip.to_string(),
            reason: e.to_string(),
        })
    };
    let mut instances = Vec::new();
    let mut ids = HashSet::new();
    match &service.lookup {
        DnsLookup::Host(host, port) => {
            let (records, ttl) = records(resolver, name, host, RecordType::A).await?;
            for ip in addresses(&records) {
                let instance = make(ip, *port)?.with_metadata("dns_name", host.to_string());
                if ids.insert(instance.id().to_owned()) {
                    instances.push(instance);
                }
            }
            Ok(Answer { instances, ttl })
        }
        DnsLookup::Srv(srv_name) => {
            let (records, mut ttl) = records(resolver, name, srv_name, RecordType::SRV).await?;
            let mut targets: Vec<_> = records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(srv) if !srv.target.is_root() => Some(srv.clone()),
                    _ => None,
                })
                .collect();
            targets.sort_by(|a, b| (a.priority, &a.target).cmp(&(b.priority, &b.target)));
            for srv in targets {
                let (addrs, addr_ttl) =
                    self::records(resolver, name, &srv.target, RecordType::A).await?;
                ttl = min_ttl(ttl, addr_ttl);
                for ip in addresses(&addrs) {
                    let instance = make(ip, srv.port)?
                        .with_weight(u32::from(srv.weight.max(1)))
                        .with_metadata("srv_priority", srv.priority.to_string())
                        .with_metadata("srv_weight", srv.weight.to_string())
                        .with_metadata("srv_target", srv.target.to_string());
                    if ids.insert(instance.id().to_owned()) {
                        instances.push(instance);
                    }
                }
            }
            Ok(Answer { instances, ttl })
        }
    }
}
