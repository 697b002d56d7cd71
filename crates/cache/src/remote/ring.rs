//! Client-side consistent hashing over several Redis nodes.

use std::fmt;
use std::time::Duration;

use rampart_core::ConfigError;
use tokio::sync::broadcast;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::redis::{RedisCache, RedisConfig, instance_id, parse_url};
use super::{BoxFuture, GuardConfig, GuardedRemote, RemoteCache, RemoteError};

/// A consistent-hash ring: each node owns `virtual_nodes × weight` points
/// on a 64-bit circle, and a key belongs to the node of the first point at
/// or after the key's hash.
///
/// Hashes are XXH3-64 (seed 0 for keys; seed `i` over the node id for the
/// node's `i`-th point), which is fixed by its specification: every
/// process, on every platform and release, routes a key to the same node.
/// Adding a node moves only the keys that land on its new points (about
/// `weight / total weight` of them); removing one moves only its own keys.
/// With `V` points per node a node's share of the circle deviates from its
/// fair share by about `1/√V` (3 % for 1,000).
///
/// ```
/// use rampart_cache::remote::HashRing;
///
/// let mut ring = HashRing::new(1000);
/// ring.add("a:6379", 1, "node a");
/// ring.add("b:6379", 1, "node b");
/// ring.add("c:6379", 2, "node c"); // twice the keys
/// let owner = *ring.get("user:42").unwrap();
/// assert_eq!(ring.get("user:42"), Some(&owner)); // stable
/// let shares = ring.shares();
/// assert!((shares[2].1 - 0.5).abs() < 0.05);
/// ```
#[derive(Clone)]
pub struct HashRing<N> {
    virtual_nodes: u32,
    nodes: Vec<Node<N>>,
    /// `(point, index into nodes)`, sorted.
    points: Vec<(u64, u32)>,
}

#[derive(Clone)]
struct Node<N> {
    id: String,
    weight: u32,
    value: N,
}

impl<N> HashRing<N> {
    /// An empty ring giving each node `virtual_nodes` points per unit of
    /// weight (at least 1).
    pub fn new(virtual_nodes: u32) -> Self {
        Self {
            virtual_nodes: virtual_nodes.max(1),
            nodes: Vec::new(),
            points: Vec::new(),
        }
    }

    /// Adds `value` under `id` (what its points are hashed from: use
    /// something stable, such as `host:port`) with `weight` (at least 1).
    /// A node already under `id` is replaced and returned.
    pub fn add(&mut self, id: impl Into<String>, weight: u32, value: N) -> Option<N> {
        let id = id.into();
        let old = self.take(&id);
        self.nodes.push(Node {
            id,
            weight: weight.max(1),
            value,
        });
        self.rebuild();
        old
    }

    /// Removes the node under `id`, if any.
    pub fn remove(&mut self, id: &str) -> Option<N> {
        let old = self.take(id);
        if old.is_some() {
            self.rebuild();
        }
        old
    }

    fn take(&mut self, id: &str) -> Option<N> {
        let i = self.nodes.iter().position(|n| n.id == id)?;
        Some(self.nodes.remove(i).value)
    }

    fn rebuild(&mut self) {
        self.points.clear();
        for (i, node) in self.nodes.iter().enumerate() {
            let count = u64::from(self.virtual_nodes) * u64::from(node.weight);
            let i = u32::try_from(i).expect("fewer than 2^32 nodes");
            self.points
                .extend((0..count).map(|v| (xxh3_64_with_seed(node.id.as_bytes(), v), i)));
        }
        // Ties (vanishingly rare) go to the node added first: the same
        // order in every process that adds nodes in the same order.
        self.points.sort_unstable();
    }

    /// The index into `nodes` of the owner of `key`.
    fn owner(&self, key: &str) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = xxh3_64(key.as_bytes());
        let at = self.points.partition_point(|&(p, _)| p < h);
        let (_, node) = self.points[if at == self.points.len() { 0 } else { at }];
        Some(node as usize)
    }

    /// The node owning `key`; `None` when the ring is empty.
    pub fn get(&self, key: &str) -> Option<&N> {
        self.owner(key).map(|i| &self.nodes[i].value)
    }

    /// The id of the node owning `key`.
    pub fn get_id(&self, key: &str) -> Option<&str> {
        self.owner(key).map(|i| self.nodes[i].id.as_str())
    }

    /// The nodes, as `(id, weight, value)`, in the order they were added.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, u32, &N)> {
        self.nodes
            .iter()
            .map(|n| (n.id.as_str(), n.weight, &n.value))
    }

    /// How many nodes the ring has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the ring has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Each node's share of the hash circle (the fraction of all keys it
    /// gets on average), in the order of [`nodes`](Self::nodes).
    pub fn shares(&self) -> Vec<(&str, f64)> {
        let mut owned = vec![0u64; self.nodes.len()];
        if let Some(&(last, last_node)) = self.points.last() {
            // Each point owns the arc from the previous point (exclusive)
            // to itself; the first one owns the wrap-around arc.
            let mut prev = last;
            for &(p, node) in &self.points {
                let arc = p.wrapping_sub(prev);
                owned[node as usize] = owned[node as usize].wrapping_add(arc);
                prev = p;
            }
            if self.points.len() == 1 {
                owned[last_node as usize] = u64::MAX;
            }
        }
        let full = 2f64.powi(64);
        self.nodes
            .iter()
            .zip(owned)
            .map(|(n, arc)| (n.id.as_str(), arc as f64 / full))
            .collect()
    }
}

impl<N> fmt::Debug for HashRing<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashRing")
            .field("virtual_nodes", &self.virtual_nodes)
            .field(
                "nodes",
                &self
                    .nodes
                    .iter()
                    .map(|n| (&n.id, n.weight))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A [`RemoteCache`] over several Redis nodes: each key goes to the node
/// a [`HashRing`] picks for it (built by [`RedisConfig::build_sharded`]
/// or, with one breaker per node, [`RedisConfig::build_sharded_guarded`]).
///
/// Invalidation goes through the key's own node: `invalidate` deletes the
/// key there and publishes on that node's channel. Every process
/// subscribes to every node's channel, so all of them hear it, and the
/// message travels on the same connection as the delete (when the node is
/// down neither happens and the caller sees the error). The keys of all
/// nodes arrive on one [`invalidations`](RemoteCache::invalidations)
/// receiver.
///
/// Nodes are identified on the ring by `host:port/db`, so a password
/// change does not move keys; every process must list the same nodes with
/// the same weights and `virtual_nodes` (their order does not matter).
///
/// ```no_run
/// // Needs two Redis servers on loopback.
/// use std::time::Duration;
/// use rampart_cache::remote::{NodeConfig, RedisConfig, RemoteCache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = RedisConfig::new()
///     .prefix("rampart:cache:users:")
///     .nodes([
///         NodeConfig::new("redis://127.0.0.1:6379"),
///         NodeConfig::new("redis://127.0.0.1:6380").weight(2),
///     ])
///     .build_sharded()?;
/// cache.set("42", b"ada".to_vec(), Duration::from_secs(60)).await?;
/// println!("42 lives on {}", cache.ring().get_id("42").unwrap());
/// # Ok(()) }
/// ```
pub struct ShardedRedis<R = RedisCache> {
    ring: HashRing<R>,
    invalidations: broadcast::Sender<String>,
}

impl RedisConfig {
    /// A [`ShardedRedis`] over [`nodes`](Self::nodes) (`url` is not
    /// used). Connects lazily, like [`build`](Self::build); refuses an
    /// empty node list and two nodes at the same `host:port/db`
    /// (`redis.nodes`).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns one subscriber per node).
    pub fn build_sharded(&self) -> Result<ShardedRedis, ConfigError> {
        self.build_nodes(|_, cache| Ok(cache))
    }

    /// [`build_sharded`](Self::build_sharded) with each node in its own
    /// [`GuardedRemote`] (its own timeout and breaker, named
    /// `{guard name}@{host:port/db}`), so that one node down does not cut
    /// off the others.
    pub fn build_sharded_guarded(
        &self,
        guard: &GuardConfig,
    ) -> Result<ShardedRedis<GuardedRemote<RedisCache>>, ConfigError> {
        guard.validate()?;
        self.build_nodes(|id, cache| {
            guard
                .clone()
                .name(format!("{}@{id}", guard.name_ref()))
                .build(cache)
        })
    }

    fn build_nodes<R>(
        &self,
        wrap: impl Fn(&str, RedisCache) -> Result<R, ConfigError>,
    ) -> Result<ShardedRedis<R>, ConfigError> {
        self.validate_common()?;
        if self.nodes.is_empty() {
            return Err(ConfigError::new(
                "redis.nodes",
                "build_sharded needs at least one node",
            ));
        }
        let clients = self
            .nodes
            .iter()
            .map(|n| {
                rampart_core::error::validate::non_zero("redis.nodes.weight", n.weight)?;
                let client = parse_url("redis.nodes", &n.url)?;
                let info = client.get_connection_info();
                let id = format!("{}/{}", info.addr(), info.redis_settings().db());
                Ok((id, n.weight, client))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let mut ids: Vec<&str> = clients.iter().map(|(id, _, _)| id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::new(
                "redis.nodes",
                format!("{} is listed twice", w[0]),
            ));
        }
        let (tx, _) = broadcast::channel(self.invalidation_capacity);
        let id = instance_id();
        let mut ring = HashRing::new(self.virtual_nodes);
        for (node_id, weight, client) in clients {
            let cache = RedisCache::from_parts(self, client, id.clone(), tx.clone());
            let node = wrap(&node_id, cache)?;
            ring.add(node_id, weight, node);
        }
        Ok(ShardedRedis {
            ring,
            invalidations: tx,
        })
    }
}

impl<R: RemoteCache> ShardedRedis<R> {
    /// The ring: which node owns which key.
    pub fn ring(&self) -> &HashRing<R> {
        &self.ring
    }

    fn node(&self, key: &str) -> &R {
        self.ring
            .get(key)
            .expect("a sharded store has at least one node")
    }
}

impl<R: RemoteCache> RemoteCache for ShardedRedis<R> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        self.node(key).get(key)
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.node(key).set(key, value, ttl)
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.node(key).delete(key)
    }

    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.node(key).invalidate(key)
    }

    fn invalidations(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.invalidations.subscribe())
    }
}

impl<R> fmt::Debug for ShardedRedis<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedRedis")
            .field("ring", &self.ring)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring(nodes: &[String], virtual_nodes: u32) -> HashRing<usize> {
        let mut r = HashRing::new(virtual_nodes);
        for (i, id) in nodes.iter().enumerate() {
            r.add(id.clone(), 1, i);
        }
        r
    }

    fn owners(r: &HashRing<usize>, keys: &[String]) -> Vec<String> {
        keys.iter()
            .map(|k| r.get_id(k).unwrap().to_owned())
            .collect()
    }

    /// Distinct node ids shaped like real ones (`host:port/db`).
    fn node_ids(n: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<String>> {
        prop::collection::hash_set((any::<[u8; 4]>(), 1024u16..65535), n).prop_map(|set| {
            set.into_iter()
                .map(|(ip, port)| format!("{}.{}.{}.{}:{port}/0", ip[0], ip[1], ip[2], ip[3]))
                .collect()
        })
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("user:{i}")).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// With 1,000 points per node a node's share of the circle is the
        /// sum of 1,000 arcs and deviates from 1/n by about 1/√1000 ≈ 3.2 %
        /// (one standard deviation). The largest and smallest of up to 16
        /// nodes stay within ±4.5 σ (±14 %) except with a probability far
        /// below one in a million per case, so max/min ≤ 1.14/0.86 ≈ 1.33.
        /// (Without virtual nodes, one point per node, the ratio is
        /// routinely above 10.)
        #[test]
        fn shares_are_balanced(ids in node_ids(2..=16)) {
            let r = ring(&ids, 1000);
            let shares: Vec<f64> = r.shares().into_iter().map(|(_, s)| s).collect();
            let total: f64 = shares.iter().sum();
            prop_assert!((total - 1.0).abs() < 1e-9, "shares sum to {}", total);
            let max = shares.iter().cloned().fold(0.0, f64::max);
            let min = shares.iter().cloned().fold(1.0, f64::min);
            prop_assert!(max / min <= 1.33, "max/min = {} for {} nodes", max / min, ids.len());
            // and real keys follow the shares
            let keys = keys(20_000);
            let mut counts = vec![0u32; ids.len()];
            for k in &keys {
                counts[*r.get(k).unwrap()] += 1;
            }
            let (cmax, cmin) = (*counts.iter().max().unwrap(), *counts.iter().min().unwrap());
            prop_assert!(f64::from(cmax) / f64::from(cmin) <= 1.45, "key counts {:?}", counts);
        }

        /// Adding one node to n moves about 1/(n+1) of the keys, all of
        /// them to the new node.
        #[test]
        fn adding_a_node_moves_its_share_only(ids in node_ids(2..=13)) {
            let (old_ids, new_id) = ids.split_at(ids.len() - 1);
            let n = old_ids.len();
            let keys = keys(10_000);
            let mut r = ring(old_ids, 1000);
            let before = owners(&r, &keys);
            r.add(new_id[0].clone(), 1, n);
            let after = owners(&r, &keys);
            let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
            prop_assert!(moved.iter().all(|(_, a)| **a == new_id[0]), "a key moved between old nodes");
            let fraction = moved.len() as f64 / keys.len() as f64;
            let expected = 1.0 / (n as f64 + 1.0);
            prop_assert!(
                (fraction - expected).abs() <= 0.3 * expected,
                "moved {} of keys, expected {} ± 30 %", fraction, expected
            );
        }

        /// Removing a node moves exactly its keys.
        #[test]
        fn removing_a_node_moves_its_keys_only(ids in node_ids(3..=13), pick in any::<prop::sample::Index>()) {
            let keys = keys(10_000);
            let mut r = ring(&ids, 1000);
            let before = owners(&r, &keys);
            let gone = ids[pick.index(ids.len())].clone();
            prop_assert!(r.remove(&gone).is_some());
            let after = owners(&r, &keys);
            for (b, a) in before.iter().zip(&after) {
                if *b == gone {
                    prop_assert_ne!(a, &gone);
                } else {
                    prop_assert_eq!(a, b);
                }
            }
        }

        /// The order nodes are added in does not change routing.
        #[test]
        fn routing_does_not_depend_on_insertion_order(ids in node_ids(2..=8)) {
            let keys = keys(2_000);
            let forward = owners(&ring(&ids, 100), &keys);
            let mut reversed = ids;
            reversed.reverse();
            prop_assert_eq!(forward, owners(&ring(&reversed, 100), &keys));
        }
    }

    #[test]
    fn weights_scale_shares() {
        let mut r = HashRing::new(1000);
        r.add("a", 1, ());
        r.add("b", 3, ());
        let shares = r.shares();
        assert!((shares[0].1 - 0.25).abs() < 0.03, "{shares:?}");
        assert!((shares[1].1 - 0.75).abs() < 0.03, "{shares:?}");
    }

    #[test]
    fn hashes_are_stable_across_processes() {
        // Fixed by the XXH3 specification; a change here would remap
        // every key of every deployed cache.
        // XXH3-64 of the empty input, from the specification's test vectors.
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        let mut r = HashRing::new(10);
        r.add("a", 1, 'a');
        r.add("b", 1, 'b');
        let routed: String = (0..16).map(|i| *r.get(&format!("k{i}")).unwrap()).collect();
        assert_eq!(routed, "ababbbbbabababba");
    }

    #[test]
    fn edge_cases() {
        let mut r: HashRing<u8> = HashRing::new(0);
        assert!(r.get("x").is_none());
        assert!(r.shares().is_empty());
        assert_eq!(r.add("only", 0, 1), None);
        assert_eq!(r.get("x"), Some(&1));
        assert_eq!(r.shares(), vec![("only", 1.0)]);
        assert_eq!(r.add("only", 1, 2), Some(1));
        assert_eq!(r.len(), 1);
        assert_eq!(r.remove("nope"), None);
        assert_eq!(r.remove("only"), Some(2));
        assert!(r.is_empty() && r.get("x").is_none());
    }

    #[tokio::test]
    async fn sharded_config_is_checked() {
        let field = |c: RedisConfig| c.build_sharded().unwrap_err().field();
        assert_eq!(field(RedisConfig::new()), "redis.nodes");
        let twice = RedisConfig::new().nodes([
            super::super::NodeConfig::new("redis://127.0.0.1:7000"),
            super::super::NodeConfig::new("redis://:pw@127.0.0.1:7000/0"),
        ]);
        assert_eq!(field(twice), "redis.nodes");
        let bad = RedisConfig::new().nodes([super::super::NodeConfig::new("nope://x")]);
        assert_eq!(field(bad), "redis.nodes");
        // distinct databases on one server are distinct nodes
        let dbs = RedisConfig::new().nodes([
            super::super::NodeConfig::new("redis://127.0.0.1:7000/0"),
            super::super::NodeConfig::new("redis://127.0.0.1:7000/1"),
        ]);
        let sharded = dbs.build_sharded().unwrap();
        let ids: Vec<_> = sharded
            .ring()
            .nodes()
            .map(|(id, _, _)| id.to_owned())
            .collect();
        assert_eq!(ids, ["127.0.0.1:7000/0", "127.0.0.1:7000/1"]);
    }
}
