//! The breaker's state machine, free of tokio so loom can check it alone.
//!
//! Time is passed in as nanoseconds on the breaker's own clock (the
//! service reads tokio's clock; loom tests pass numbers).
//!
//! - The state and an epoch share one atomic word. Every transition bumps
//!   the epoch, and an outcome whose permit carries an older epoch is
//!   dropped: calls that started before a transition never count after it.
//! - Transitions take one short lock and re-check the word under it, so of
//!   several threads racing to make the same transition exactly one wins.
//!   The hot path (closed, recording an outcome) takes no lock.
//! - Half-open trials are accounted in a second word packing the epoch,
//!   the trials in flight and the trial successes and failures, updated by
//!   compare-and-swap: at most K trials are ever admitted per half-open
//!   period.

use crate::sync::{AtomicU32, AtomicU64, Mutex, Ordering, lock};
use crate::window::{Counts, Window};

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Calls pass and their outcomes are recorded.
    Closed = 0,
    /// Calls are rejected until the open duration has passed.
    Open = 1,
    /// A bounded number of trial calls pass; their outcomes decide between
    /// closed and open.
    HalfOpen = 2,
    /// Forced open by an operator: every call is rejected until reset.
    ForcedOpen = 3,
    /// Disabled by an operator: every call passes, nothing is recorded.
    Disabled = 4,
    /// Every call passes and is recorded, but the breaker never trips.
    MetricsOnly = 5,
}

impl State {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            4 => State::Disabled,
            _ => State::MetricsOnly,
        }
    }

    /// A short lowercase name, as used in metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// `true` for the states that reject calls (open and forced open).
    pub fn is_open(&self) -> bool {
        matches!(self, State::Open | State::ForcedOpen)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a finished call means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counts as a success (or, if slow, as a slow call).
    Success,
    /// Counts as a failure.
    Failure,
    /// Not recorded; releases a half-open trial slot.
    Ignored,
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// For a transition to open: how long it stays open, in nanoseconds.
    pub open_for: Option<u64>,
}

/// Admission to make one call. Hand it back to [`Core::record`] exactly
/// once.
#[derive(Debug)]
pub struct Permit {
    epoch: u32,
    kind: PermitKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PermitKind {
    Normal,
    Trial,
    Untracked,
}

impl Permit {
    /// `true` for a half-open trial call.
    pub fn is_trial(&self) -> bool {
        self.kind == PermitKind::Trial
    }

    /// `true` when the outcome is not recorded at all (disabled breaker).
    pub fn is_untracked(&self) -> bool {
        self.kind == PermitKind::Untracked
    }
}

/// A refused call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The state that refused it.
    pub state: State,
    /// Nanoseconds until a trial call will be allowed, when known.
    pub retry_in: Option<u64>,
}

/// Thresholds that can change while the breaker runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Trip when failures/calls ≥ this.
    pub failure_rate: f64,
    /// Trip when slow/calls ≥ this (only when `slow_nanos` > 0).
    pub slow_rate: f64,
    /// A call at least this long is slow; 0 disables slow-call detection.
    pub slow_nanos: u64,
    /// Rates are judged only over at least this many calls.
    pub min_calls: u32,
    /// Trip after this many failures in a row; 0 disables.
    pub consecutive_failures: u32,
    /// Trial calls per half-open period (≤ [`MAX_TRIALS`]).
    pub half_open_calls: u32,
    /// Share of the trials that must succeed to close.
    pub half_open_success_ratio: f64,
    /// Longest stay in half-open before reopening, in nanoseconds.
    pub half_open_max_nanos: u64,
    /// How long the breaker stays open.
    pub open: OpenPolicy,
}

/// How long the breaker stays open: `base × multiplier^(n-1)` for the n-th
/// consecutive opening, capped at `max`, then spread by ± `jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenPolicy {
    /// The first open duration, in nanoseconds.
    pub base_nanos: u64,
    /// The cap, in nanoseconds.
    pub max_nanos: u64,
    /// Growth per consecutive opening (1.0 = fixed).
    pub multiplier: f64,
    /// Spread as a share of the duration (0.0 = none).
    pub jitter: f64,
}

/// Most trial calls a half-open period can admit.
pub const MAX_TRIALS: u32 = (1 << 12) - 1;

#[derive(Debug)]
struct Transitions {
    open: OpenPolicy,
    /// Openings since the breaker last closed from half-open.
    opens: u32,
    rng: u64,
}

/// The state machine.
#[derive(Debug)]
pub struct Core {
    word: AtomicU64,
    half: AtomicU64,
    open_until: AtomicU64,
    half_since: AtomicU64,
    consecutive: AtomicU32,
    rejected: AtomicU64,
    window: Window,
    failure_rate: AtomicU64,
    slow_rate: AtomicU64,
    slow_nanos: AtomicU64,
    min_calls: AtomicU32,
    consecutive_failures: AtomicU32,
    half_open_calls: AtomicU32,
    half_open_ratio: AtomicU64,
    half_open_max_nanos: AtomicU64,
    transitions: Mutex<Transitions>,
}

const STATE_BITS: u32 = 8;
const EPOCH_MASK: u64 = (1 << 24) - 1;

fn word(state: State, epoch: u32) -> u64 {
    (u64::from(epoch) << STATE_BITS) | state as u64
}

fn state_of(w: u64) -> State {
    State::from_u8((w & 0xff) as u8)
}

fn epoch_of(w: u64) -> u32 {
    (w >> STATE_BITS) as u32
}

/// epoch (24 bits) | in flight (12) | successes (14) | failures (14)
fn pack_half(epoch: u32, in_flight: u64, ok: u64, failed: u64) -> u64 {
    ((u64::from(epoch) & EPOCH_MASK) << 40) | (in_flight << 28) | (ok << 14) | failed
}

fn unpack_half(h: u64) -> (u64, u64, u64, u64) {
    (h >> 40, (h >> 28) & 0xfff, (h >> 14) & 0x3fff, h & 0x3fff)
}

impl Core {
    /// A closed breaker over `window`.
    pub fn new(window: Window, thresholds: &Thresholds, seed: u64) -> Self {
        let core = Self {
            word: AtomicU64::new(word(State::Closed, 0)),
            half: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            half_since: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
            window,
            failure_rate: AtomicU64::new(0),
            slow_rate: AtomicU64::new(0),
            slow_nanos: AtomicU64::new(0),
            min_calls: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            half_open_calls: AtomicU32::new(1),
            half_open_ratio: AtomicU64::new(0),
            half_open_max_nanos: AtomicU64::new(0),
            transitions: Mutex::new(Transitions {
                open: thresholds.open,
                opens: 0,
                rng: seed | 1,
            }),
        };
        core.set_thresholds(thresholds);
        core
    }

    /// Applies new thresholds; calls in flight are judged by the new ones.
    pub fn set_thresholds(&self, t: &Thresholds) {
        self.failure_rate
            .store(t.failure_rate.to_bits(), Ordering::Relaxed);
        self.slow_rate
            .store(t.slow_rate.to_bits(), Ordering::Relaxed);
        self.slow_nanos.store(t.slow_nanos, Ordering::Relaxed);
        self.min_calls.store(t.min_calls, Ordering::Relaxed);
        self.consecutive_failures
            .store(t.consecutive_failures, Ordering::Relaxed);
        self.half_open_calls
            .store(t.half_open_calls.clamp(1, MAX_TRIALS), Ordering::Relaxed);
        self.half_open_ratio
            .store(t.half_open_success_ratio.to_bits(), Ordering::Relaxed);
        self.half_open_max_nanos
            .store(t.half_open_max_nanos, Ordering::Relaxed);
        lock(&self.transitions).open = t.open;
    }

    /// The current state.
    #[inline]
    pub fn state(&self) -> State {
        state_of(self.word.load(Ordering::Acquire))
    }

    /// The slow-call threshold in nanoseconds (0: disabled).
    #[inline]
    pub fn slow_nanos(&self) -> u64 {
        self.slow_nanos.load(Ordering::Relaxed)
    }

    /// `true` when calls must be timed (slow-call detection is on).
    #[inline]
    pub fn times_calls(&self) -> bool {
        self.slow_nanos() != 0
    }

    /// Calls rejected so far (see [`Core::note_rejected`]).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The window's totals at `now`.
    pub fn counts(&self, now: u64) -> Counts {
        self.window.counts(now)
    }

    /// Nanoseconds until an open breaker admits a trial; `None` unless open.
    pub fn open_remaining(&self, now: u64) -> Option<u64> {
        let w = self.word.load(Ordering::Acquire);
        (state_of(w) == State::Open)
            .then(|| self.open_until.load(Ordering::Relaxed).saturating_sub(now))
    }

    /// The common case of [`Core::acquire`]: a permit when closed (or
    /// metrics-only), from one atomic load; `None` otherwise.
    #[inline]
    pub fn try_closed(&self) -> Option<Permit> {
        let w = self.word.load(Ordering::Acquire);
        matches!(state_of(w), State::Closed | State::MetricsOnly).then(|| Permit {
            epoch: epoch_of(w),
            kind: PermitKind::Normal,
        })
    }

    /// Asks to make one call. `clock` is read only when the state needs the
    /// time; `on` hears of every transition this call caused.
    #[inline]
    pub fn acquire(
        &self,
        clock: &impl Fn() -> u64,
        on: &mut impl FnMut(Transition),
    ) -> Result<Permit, Rejection> {
        loop {
            let w = self.word.load(Ordering::Acquire);
            let epoch = epoch_of(w);
            match state_of(w) {
                State::Closed | State::MetricsOnly => {
                    return Ok(Permit {
                        epoch,
                        kind: PermitKind::Normal,
                    });
                }
                State::Disabled => {
                    return Ok(Permit {
                        epoch,
                        kind: PermitKind::Untracked,
                    });
                }
                State::ForcedOpen => {
                    return Err(self.reject(State::ForcedOpen, None));
                }
                State::Open => {
                    let now = clock();
                    let until = self.open_until.load(Ordering::Relaxed);
                    if now < until {
                        return Err(self.reject(State::Open, Some(until - now)));
                    }
                    self.transition(Some(w), State::HalfOpen, now, on);
                }
                State::HalfOpen => {
                    let now = clock();
                    let since = self.half_since.load(Ordering::Relaxed);
                    let dwell = self.half_open_max_nanos.load(Ordering::Relaxed);
                    if now.saturating_sub(since) >= dwell {
                        self.transition(Some(w), State::Open, now, on);
                        continue;
                    }
                    if let Some(admitted) = self.admit_trial(epoch) {
                        return if admitted {
                            Ok(Permit {
                                epoch,
                                kind: PermitKind::Trial,
                            })
                        } else {
                            Err(self.reject(State::HalfOpen, None))
                        };
                    }
                }
            }
        }
    }

    /// `Some(true)` when a trial slot was taken, `Some(false)` when all are
    /// taken, `None` when the half-open period ended meanwhile.
    #[inline]
    fn admit_trial(&self, epoch: u32) -> Option<bool> {
        let k = u64::from(self.half_open_calls.load(Ordering::Relaxed));
        let mut h = self.half.load(Ordering::Acquire);
        loop {
            let (he, in_flight, ok, failed) = unpack_half(h);
            if he != u64::from(epoch) & EPOCH_MASK {
                return None;
            }
            if in_flight + ok + failed >= k {
                return Some(false);
            }
            let next = pack_half(epoch, in_flight + 1, ok, failed);
            match self
                .half
                .compare_exchange_weak(h, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(true),
                Err(actual) => h = actual,
            }
        }
    }

    fn reject(&self, state: State, retry_in: Option<u64>) -> Rejection {
        Rejection { state, retry_in }
    }

    /// Counts a refused call (not a caller waiting in `poll_ready`).
    pub fn note_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how a call admitted by `permit` ended. `slow` says whether
    /// it took at least [`Core::slow_nanos`]; `clock` is read only when
    /// needed.
    #[inline]
    pub fn record(
        &self,
        permit: Permit,
        verdict: Verdict,
        slow: bool,
        clock: &impl Fn() -> u64,
        on: &mut impl FnMut(Transition),
    ) {
        match permit.kind {
            PermitKind::Untracked => {}
            PermitKind::Normal => self.record_normal(permit.epoch, verdict, slow, clock, on),
            PermitKind::Trial => self.record_trial(permit.epoch, verdict, slow, clock, on),
        }
    }

    #[inline]
    fn record_normal(
        &self,
        epoch: u32,
        verdict: Verdict,
        slow: bool,
        clock: &impl Fn() -> u64,
        on: &mut impl FnMut(Transition),
    ) {
        if verdict == Verdict::Ignored {
            return;
        }
        let w = self.word.load(Ordering::Acquire);
        if epoch_of(w) != epoch {
            return; // started before a transition: not evidence any more
        }
        let failure = verdict == Verdict::Failure;
        let now = if self.window.needs_clock() {
            clock()
        } else {
            0
        };
        let counts = self.window.record(failure, slow, now);
        let consecutive = if failure {
            self.consecutive.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            0
        };
        if state_of(w) == State::Closed && self.should_trip(counts, consecutive) {
            self.transition(Some(w), State::Open, clock(), on);
        }
    }

    #[inline]
    fn should_trip(&self, counts: Counts, consecutive: u32) -> bool {
        if counts.failures == 0 && counts.slow == 0 {
            return false; // nothing to trip on: the common case, no math
        }
        let in_a_row = self.consecutive_failures.load(Ordering::Relaxed);
        if in_a_row != 0 && consecutive >= in_a_row {
            return true;
        }
        if counts.calls == 0 || counts.calls < u64::from(self.min_calls.load(Ordering::Relaxed)) {
            return false;
        }
        let calls = counts.calls as f64;
        let failure_rate = f64::from_bits(self.failure_rate.load(Ordering::Relaxed));
        if counts.failures > 0 && counts.failures as f64 >= failure_rate * calls {
            return true;
        }
        if counts.slow > 0 && self.slow_nanos() != 0 {
            let slow_rate = f64::from_bits(self.slow_rate.load(Ordering::Relaxed));
            return counts.slow as f64 >= slow_rate * calls;
        }
        false
    }

    fn record_trial(
        &self,
        epoch: u32,
        verdict: Verdict,
        slow: bool,
        clock: &impl Fn() -> u64,
        on: &mut impl FnMut(Transition),
    ) {
        // A slow trial is a failed trial: the callee has not recovered.
        let bad = u64::from(verdict == Verdict::Failure || (verdict == Verdict::Success && slow));
        let good = u64::from(verdict == Verdict::Success && !slow);
        let mut h = self.half.load(Ordering::Acquire);
        let (ok, failed) = loop {
            let (he, in_flight, ok, failed) = unpack_half(h);
            if he != u64::from(epoch) & EPOCH_MASK || in_flight == 0 {
                return; // the half-open period this trial belonged to is over
            }
            let next = pack_half(epoch, in_flight - 1, ok + good, failed + bad);
            match self
                .half
                .compare_exchange_weak(h, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break (ok + good, failed + bad),
                Err(actual) => h = actual,
            }
        };
        if good + bad == 0 {
            return;
        }
        let k = u64::from(self.half_open_calls.load(Ordering::Relaxed));
        let ratio = f64::from_bits(self.half_open_ratio.load(Ordering::Relaxed));
        let needed = ((k as f64 * ratio).ceil() as u64).clamp(1, k);
        let expected = word(State::HalfOpen, epoch);
        if failed > k - needed {
            self.transition(Some(expected), State::Open, clock(), on);
        } else if ok >= needed {
            self.transition(Some(expected), State::Closed, clock(), on);
        }
    }

    /// Moves to `to` whatever the state (an operator's command).
    pub fn force(&self, to: State, now: u64, on: &mut impl FnMut(Transition)) {
        self.transition(None, to, now, on);
    }

    /// Makes one transition. With `expected`, it happens only if the state
    /// word still equals it, so one of several racing callers wins.
    fn transition(
        &self,
        expected: Option<u64>,
        to: State,
        now: u64,
        on: &mut impl FnMut(Transition),
    ) -> bool {
        let done = {
            let mut t = lock(&self.transitions);
            let current = self.word.load(Ordering::Acquire);
            if expected.is_some_and(|e| e != current) {
                return false;
            }
            let from = state_of(current);
            let epoch = epoch_of(current).wrapping_add(1);
            let mut open_for = None;
            match to {
                State::Open => {
                    t.opens = t.opens.saturating_add(1);
                    let d = t.open_duration();
                    self.open_until
                        .store(now.saturating_add(d), Ordering::Relaxed);
                    open_for = Some(d);
                }
                State::HalfOpen => {
                    self.half
                        .store(pack_half(epoch, 0, 0, 0), Ordering::Release);
                    self.half_since.store(now, Ordering::Relaxed);
                }
                State::Closed => {
                    self.window.reset();
                    self.consecutive.store(0, Ordering::Relaxed);
                    t.opens = 0;
                }
                State::ForcedOpen | State::Disabled | State::MetricsOnly => {}
            }
            self.word.store(word(to, epoch), Ordering::Release);
            Transition { from, to, open_for }
        };
        on(done);
        true
    }
}

impl Transitions {
    fn open_duration(&mut self) -> u64 {
        let p = self.open;
        let growth = p
            .multiplier
            .max(1.0)
            .powi(self.opens.saturating_sub(1).min(64) as i32);
        let mut d = (p.base_nanos as f64 * growth).min(p.max_nanos.max(p.base_nanos) as f64);
        if p.jitter > 0.0 {
            // xorshift64*: cheap, seeded, repeatable
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
            let unit = (r >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            d *= 1.0 + p.jitter * (2.0 * unit - 1.0);
        }
        d.max(0.0) as u64
    }
}
