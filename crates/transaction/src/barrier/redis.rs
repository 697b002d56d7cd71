//! The Redis barrier: the same decision, in one atomic script, for
//! participants without a SQL store.

use std::future::Future;
use std::time::Duration;

use ::redis::aio::ConnectionLike;
use ::redis::{RedisError, Script};
use rampart_core::BoxError;
use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;
use serde_json::Value;

use super::{BarrierError, Verdict, decode_output, forward_op, observe, skip};
use crate::model::{Op, duration_ms};
use crate::participant::BranchCall;

/// Decides for one call. KEYS[1]: this op's marker; KEYS[2] (undo ops
/// only): the forward op's marker. ARGV: op, token, ttl ms, lease ms.
/// A marker is a hash: `by` (the op that wrote it), `state` (`pending`
/// while the business runs, `done` after), `token` (the running call's),
/// `since` (ms, Redis's clock), `output` (the answer, JSON).
const DECIDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local stamp = string.format('%.0f', now)
local function claim()
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'by', ARGV[1], 'state', 'pending', 'token', ARGV[2], 'since', stamp)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {'proceed'}
end
local own = redis.call('HMGET', KEYS[1], 'by', 'state', 'since', 'output')
if own[1] then
  if own[1] ~= ARGV[1] then return {'hanging'} end
  if own[2] == 'done' then return {'duplicate', own[4] or 'null'} end
  if now - tonumber(own[3]) < lease then return {'busy'} end
  return claim()
end
if #KEYS == 2 then
  local fwd = redis.call('HMGET', KEYS[2], 'by', 'state', 'since')
  if not fwd[1] then
    redis.call('HSET', KEYS[2], 'by', ARGV[1], 'state', 'done', 'since', stamp)
    redis.call('PEXPIRE', KEYS[2], ttl)
    redis.call('HSET', KEYS[1], 'by', ARGV[1], 'state', 'done', 'since', stamp, 'output', 'null')
    redis.call('PEXPIRE', KEYS[1], ttl)
    return {'empty'}
  end
  if fwd[2] == 'pending' and now - tonumber(fwd[3]) < lease then return {'busy'} end
end
return claim()
";

/// Settles a call that proceeded. KEYS[1]: its marker. ARGV: token, then
/// `done` + output + ttl ms (business succeeded) or `release` (it
/// failed: the marker goes, so a retry runs). Only the call holding the
/// token may settle.
const SETTLE: &str = r"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if ARGV[2] == 'done' then
  redis.call('HSET', KEYS[1], 'state', 'done', 'output', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// Settings of a [`RedisBarrier`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisBarrierConfig {
    /// Prefix of every key. Defaults to `rampart:barrier:`. May not
    /// contain `{` or `}` (the keys of one branch share a cluster hash
    /// tag).
    pub prefix: String,
    /// How long a marker is kept. Defaults to 7 days; keep markers longer
    /// than any transaction can still send calls (a marker gone no longer
    /// stops a duplicate or refuses a hanging action).
    #[serde(with = "rampart_core::duration")]
    pub ttl: Duration,
    /// How long a running call's marker holds off a duplicate (answered
    /// [`Verdict::Busy`]) before it is taken to be abandoned (its process
    /// died) and the next call takes it over. Defaults to 60 s; set it
    /// above the business logic's longest run.
    #[serde(with = "rampart_core::duration")]
    pub lease: Duration,
}

impl Default for RedisBarrierConfig {
    fn default() -> Self {
        Self {
            prefix: "rampart:barrier:".to_owned(),
            ttl: Duration::from_secs(7 * 24 * 3600),
            lease: Duration::from_secs(60),
        }
    }
}

impl RedisBarrierConfig {
    /// Sets the key prefix. Defaults to `rampart:barrier:`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets how long markers are kept. Defaults to 7 days.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the running call's lease. Defaults to 60 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// A barrier on connection `conn` (a
    /// `redis::aio::MultiplexedConnection` or `ConnectionManager`).
    /// Refused: a zero ttl or lease, a lease longer than the ttl, a prefix
    /// with `{` or `}`.
    pub fn build<C>(&self, conn: C) -> Result<RedisBarrier<C>, ConfigError> {
        validate::non_zero_duration("barrier.ttl", self.ttl)?;
        validate::non_zero_duration("barrier.lease", self.lease)?;
        validate::at_most(
            "barrier.lease",
            duration_ms(self.lease),
            duration_ms(self.ttl),
        )?;
        if self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "barrier.prefix",
                "may not contain '{' or '}' (the branch's keys use a hash tag)",
            ));
        }
        Ok(RedisBarrier {
            conn,
            config: self.clone(),
            decide: Script::new(DECIDE),
            settle: Script::new(SETTLE),
        })
    }
}

/// The participant barrier on Redis.
///
/// # What it guarantees
///
/// - The decision is atomic: one Lua script reads and writes the markers
///   of `(transaction, branch, op)` (and, for an undo op, of its forward
///   op), so of concurrent duplicates exactly one proceeds, an undo op and
///   its action cannot both conclude the other is absent, and a hanging
///   action is refused once its undo op has been seen.
/// - The order is: **decide → run the business → settle**. The winner's
///   marker is `pending` while its business runs; a duplicate or undo op
///   arriving meanwhile is answered [`Verdict::Busy`] (a retryable
///   [`BranchError`](crate::participant::BranchError)). On success the
///   marker becomes `done` with the answer, which later duplicates get; on
///   a business failure the marker is removed, so a retry runs.
/// - Markers expire after the configured ttl (default 7 days).
///
/// # What it cannot guarantee
///
/// - The business effect is not in the same transaction as the marker.
///   If the process dies (or Redis becomes unreachable) after the business
///   took effect but before the marker is settled, the marker stays
///   `pending`; once its lease runs out the next call takes it over and
///   runs the business again. In that window the effect is at-least-once:
///   make the business itself tolerate a re-run, or use the SQL barrier.
///   Settling is guarded by a token, so a call whose lease was taken over
///   cannot overwrite the new holder's marker (it logs a warning and still
///   answers its own result).
/// - An undo op that finds its action `pending` past the lease runs its
///   compensation as if the action may have run (as a coordinator would
///   for an in-doubt action).
/// - Redis must keep the markers: with an eviction policy that can evict
///   keys with a ttl (`volatile-*`, `allkeys-*`), or after a failover that
///   loses recent writes (replication is asynchronous), a lost marker
///   lets a duplicate or a hanging action through. Use `noeviction` and,
///   where it matters, `WAIT`/AOF `appendfsync always`.
///
/// The lease is measured on Redis's clock (`TIME`), one clock for every
/// participant.
///
/// ```no_run
/// # async fn demo(call: rampart_transaction::participant::BranchCall) -> Result<(), rampart_core::BoxError> {
/// use rampart_transaction::barrier::RedisBarrierConfig;
/// use serde_json::json;
///
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let conn = client.get_multiplexed_async_connection().await?;
/// let barrier = RedisBarrierConfig::default().build(conn)?;
/// let answer = barrier
///     .run(&call, || async { Ok::<_, rampart_core::BoxError>(json!({ "sent": true })) })
///     .await?;
/// # let _ = answer; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisBarrier<C> {
    conn: C,
    config: RedisBarrierConfig,
    decide: Script,
    settle: Script,
}

impl<C> RedisBarrier<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Runs `business` for `call` behind the barrier: decides, runs it if
    /// the call proceeds, then stores its answer (`Ok`) or removes the
    /// marker so a retry runs (`Err`). Other verdicts answer without
    /// running it ([`Verdict::answer`]).
    pub async fn run<F, Fut, E>(&self, call: &BranchCall, business: F) -> Result<Value, BoxError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>>,
        E: Into<BoxError>,
    {
        let token = format!("{:016x}", rampart_core::random::fresh_seed());
        let verdict = self.decide(call, &token).await?;
        if let Some(answer) = skip(call, &verdict) {
            return answer;
        }
        let result = business().await;
        let settled = match &result {
            Ok(output) => self.settle(call, &token, Some(output)).await,
            Err(_) => self.settle(call, &token, None).await,
        };
        match settled {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                tx = %call.tx, branch = %call.branch, op = %call.op,
                "barrier marker was taken over by another call after the lease ran out"
            ),
            Err(error) => tracing::warn!(
                tx = %call.tx, branch = %call.branch, op = %call.op, %error,
                "barrier marker could not be settled; it stays pending until its lease runs out"
            ),
        }
        match result {
            Ok(output) => {
                observe(call, "applied");
                Ok(output)
            }
            Err(e) => {
                observe(call, "failed");
                Err(e.into())
            }
        }
    }

    /// The barrier's decision for `call`; a call that proceeds holds the
    /// marker under `token` until [`RedisBarrier::run`] settles it.
    async fn decide(&self, call: &BranchCall, token: &str) -> Result<Verdict, BarrierError> {
        let mut invocation = self.decide.key(self.key(call, call.op));
        if let Some(forward) = forward_op(call.op) {
            invocation.key(self.key(call, forward));
        }
        let reply: Vec<String> = invocation
            .arg(call.op.as_str())
            .arg(token)
            .arg(duration_ms(self.config.ttl))
            .arg(duration_ms(self.config.lease))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(BarrierError::Redis)?;
        Ok(match reply.first().map(String::as_str) {
            Some("proceed") => Verdict::Proceed,
            Some("duplicate") => {
                Verdict::Duplicate(decode_output(call, reply.get(1).map(String::as_str))?)
            }
            Some("empty") => Verdict::Empty,
            Some("hanging") => Verdict::Hanging,
            Some("busy") => Verdict::Busy,
            _ => {
                return Err(BarrierError::corrupt(
                    call,
                    format!("unexpected script reply {reply:?}"),
                ));
            }
        })
    }

    /// Marks the call done with `output`, or (`None`) removes its marker.
    async fn settle(
        &self,
        call: &BranchCall,
        token: &str,
        output: Option<&Value>,
    ) -> Result<bool, RedisError> {
        let mut invocation = self.settle.key(self.key(call, call.op));
        invocation.arg(token);
        match output {
            Some(output) => invocation
                .arg("done")
                .arg(output.to_string())
                .arg(duration_ms(self.config.ttl)),
            None => invocation.arg("release"),
        };
        let settled: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(settled == 1)
    }

    /// `<prefix>{<tx>/<branch>}/<op>`: ids cannot contain `/`, `{` or `}`,
    /// so keys never collide, and a branch's keys share a hash slot.
    fn key(&self, call: &BranchCall, op: Op) -> String {
        format!(
            "{}{{{}/{}}}/{}",
            self.config.prefix, call.tx, call.branch, op
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let ok = RedisBarrierConfig::default();
        assert_eq!(ok.ttl, Duration::from_secs(604_800));
        assert!(ok.build(()).is_ok());
        let e = ok.clone().ttl(Duration::ZERO).build(()).unwrap_err();
        assert_eq!(e.field(), "barrier.ttl");
        let e = ok.clone().lease(Duration::ZERO).build(()).unwrap_err();
        assert_eq!(e.field(), "barrier.lease");
        let e = ok
            .clone()
            .ttl(Duration::from_secs(1))
            .lease(Duration::from_secs(2))
            .build(())
            .unwrap_err();
        assert_eq!(e.field(), "barrier.lease");
        let e = ok.prefix("a{b").build(()).unwrap_err();
        assert_eq!(e.field(), "barrier.prefix");
        let config: RedisBarrierConfig =
            serde_json::from_value(serde_json::json!({ "ttl": "1h", "lease": "5s" })).unwrap();
        assert_eq!(config.lease, Duration::from_secs(5));
        assert!(
            serde_json::from_value::<RedisBarrierConfig>(serde_json::json!({ "tll": "1h" }))
                .is_err()
        );
    }
}
