//! Turns the estimates of `cargo bench -p rampart-benches --bench layers`
//! (or, with `--cache`, `--bench cache`; with `--discovery`, `--bench
//! discovery`; with `--balance`, `--bench balance`) into the markdown
//! tables of
//! `docs/benchmarks.md`: nanoseconds per call, overhead over the bare
//! service, the ratios the targets are stated in, and whether each target
//! is met.
//!
//! ```text
//! cargo run -p rampart-benches --bin bench-report [--cache | --discovery | --balance] [CRITERION_DIR]
//! ```
//!
//! `CRITERION_DIR` defaults to `$CARGO_TARGET_DIR/criterion`, or the
//! workspace's `target/criterion`. Each figure is the mean point estimate
//! of `<group>/<function>/new/estimates.json`. A missing file is an error
//! (exit status 1) that names every file missing; a missed target is not.
//! The exceptions are the parts that need a real server, which the bench
//! skips when it is unreachable: the cache bench's `cache_remote` group
//! (Redis) and the discovery bench's `etcd_*` functions (etcd). When none
//! of a part's files exist the report says it was not measured.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Every group the bench writes, with its functions.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "breaker",
        &[
            "bare",
            "rampart_count",
            "rampart_time",
            "tower_resilience",
            "failsafe",
        ],
    ),
    (
        "breaker_time_window_aged",
        &["rampart_time", "tower_resilience_time"],
    ),
    (
        "bulkhead",
        &[
            "bare",
            "rampart",
            "tower_concurrency_limit",
            "tower_resilience",
        ],
    ),
    (
        "retry",
        &[
            "bare",
            "rampart_no_retry",
            "tower_retry",
            "tower_resilience",
            "rampart_no_budget",
            "tower_retry_no_budget",
        ],
    ),
    ("timeout", &["bare", "rampart", "tower_timeout"]),
    (
        "rate_limit",
        &[
            "bare",
            "rampart_global",
            "rampart_keyed",
            "governor_direct",
            "tower_resilience",
        ],
    ),
    ("queue", &["rampart", "tower_buffer"]),
    (
        "contended",
        &[
            "breaker_rampart",
            "breaker_tower_resilience",
            "bulkhead_rampart",
            "tower_concurrency_limit",
            "rate_limit_rampart",
            "queue_rampart",
            "tower_buffer",
        ],
    ),
];

/// Every group the `cache` bench writes, with its functions (issue 4).
const CACHE_GROUPS: &[(&str, &[&str])] = &[
    (
        "cache_hit",
        &[
            "moka_future_get",
            "rampart_local_hit",
            "tower_resilience_cache_hit",
        ],
    ),
    (
        "cache_remote",
        &[
            "redis_get_raw",
            "rampart_two_tier_local_hit",
            "rampart_two_tier_remote_hit",
        ],
    ),
    (
        "bloom",
        &["bloomfilter_check", "rampart_absent_key_rejected"],
    ),
];

/// The groups of `--bench discovery` (issue 5).
const DISCOVERY_GROUPS: &[(&str, &[&str])] = &[
    (
        "registry",
        &[
            "memory_discover",
            "mutex_map_discover",
            "memory_register_heartbeat",
            "etcd_discover",
            "etcd_client_discover",
        ],
    ),
    (
        "config",
        &[
            "memory_get",
            "rwlock_map_get",
            "memory_watch_fanout_1000",
            "tokio_watch_fanout_1000",
            "etcd_put_to_watch_latency",
            "etcd_client_put_to_watch_latency",
        ],
    ),
];

/// The groups of `--bench balance` (issue 6).
const BALANCE_GROUPS: &[(&str, &[&str])] = &[(
    "pick",
    &[
        "rampart_round_robin",
        "rampart_swrr",
        "rampart_p2c_ewma",
        "tower_p2c_ewma",
        "rampart_ring_hash",
        "rampart_maglev",
    ],
)];

/// Parts a bench may skip as a whole, each the functions of a group whose
/// ids start with a prefix (`""`: the whole group). The bench says why when
/// it skips one; the report marks it not measured instead of failing.
const OPTIONAL_PARTS: &[(&str, &str)] = &[
    ("cache_remote", ""),
    ("registry", "etcd_"),
    ("config", "etcd_"),
];

/// The optional part `function` of `group` belongs to, if any.
fn optional_part(group: &str, function: &str) -> Option<(&'static str, &'static str)> {
    OPTIONAL_PARTS
        .iter()
        .copied()
        .find(|&(g, prefix)| g == group && function.starts_with(prefix))
}

/// The largest aged ÷ fresh ratio still read as "the same cost": the run
/// to run noise of a few-nanosecond figure on a shared machine.
const SAME_COST: f64 = 1.25;

/// One function's figure, in nanoseconds per call.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    /// Mean point estimate.
    mean: f64,
    /// Lower bound of the mean's confidence interval.
    lower: f64,
    /// Upper bound of the mean's confidence interval.
    upper: f64,
}

/// All figures, by `(group, function)`.
type Figures = BTreeMap<(&'static str, &'static str), Estimate>;

/// Which bench to report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bench {
    /// `--bench layers`: [`GROUPS`].
    Layers,
    /// `--bench cache`: [`CACHE_GROUPS`].
    Cache,
    /// `--bench discovery`: [`DISCOVERY_GROUPS`].
    Discovery,
    /// `--bench balance`: [`BALANCE_GROUPS`].
    Balance,
}

impl Bench {
    /// The groups this bench writes.
    fn groups(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            Self::Layers => GROUPS,
            Self::Cache => CACHE_GROUPS,
            Self::Discovery => DISCOVERY_GROUPS,
            Self::Balance => BALANCE_GROUPS,
        }
    }

    /// The bench target's name.
    fn target(self) -> &'static str {
        match self {
            Self::Layers => "layers",
            Self::Cache => "cache",
            Self::Discovery => "discovery",
            Self::Balance => "balance",
        }
    }

    /// The report of `figures`, which [`load`] read for this bench.
    fn render(self, figures: &Figures) -> String {
        match self {
            Self::Layers => render(figures),
            Self::Cache => render_cache(figures),
            Self::Discovery => render_discovery(figures),
            Self::Balance => render_balance(figures),
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    let bench = if args.next_if(|a| a == "--cache").is_some() {
        Bench::Cache
    } else if args.next_if(|a| a == "--discovery").is_some() {
        Bench::Discovery
    } else if args.next_if(|a| a == "--balance").is_some() {
        Bench::Balance
    } else {
        Bench::Layers
    };
    let dir = args.next().map_or_else(default_dir, PathBuf::from);
    match load(&dir, bench) {
        Ok(figures) => {
            let report = bench.render(&figures);
            if std::io::stdout()
                .lock()
                .write_all(report.as_bytes())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            // Nothing more can be done if stderr is gone too.
            let _ = writeln!(std::io::stderr().lock(), "bench-report: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `$CARGO_TARGET_DIR/criterion`, or the workspace's `target/criterion`.
fn default_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("criterion")
}

/// Reads every estimate of `bench`, or says which files are missing or
/// unreadable. An [optional part](OPTIONAL_PARTS) none of whose files
/// exist is left out of the figures.
fn load(dir: &Path, bench: Bench) -> Result<Figures, String> {
    let mut figures = Figures::new();
    let mut problems = Vec::new();
    for &(group, functions) in bench.groups() {
        let paths: Vec<PathBuf> = functions
            .iter()
            .map(|function| {
                dir.join(group)
                    .join(function)
                    .join("new")
                    .join("estimates.json")
            })
            .collect();
        for (&function, path) in functions.iter().zip(&paths) {
            let skipped = optional_part(group, function).is_some_and(|part| {
                functions
                    .iter()
                    .zip(&paths)
                    .all(|(&f, p)| optional_part(group, f) != Some(part) || !p.exists())
            });
            if skipped {
                continue;
            }
            match read_estimate(path) {
                Ok(estimate) => {
                    figures.insert((group, function), estimate);
                }
                Err(problem) => problems.push(format!("  {}: {problem}", path.display())),
            }
        }
    }
    if problems.is_empty() {
        Ok(figures)
    } else {
        Err(format!(
            "{} of the bench's estimates cannot be read:\n{}\n\
             run `cargo bench -p rampart-benches --bench {}` first \
             (the whole bench, no filter), or pass the criterion directory",
            problems.len(),
            problems.join("\n"),
            bench.target()
        ))
    }
}

/// The mean of one `estimates.json`.
fn read_estimate(path: &Path) -> Result<Estimate, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("missing ({e})"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e})"))?;
    let mean = &json["mean"];
    let number = |value: &serde_json::Value, what: &str| {
        value.as_f64().ok_or_else(|| format!("no number at {what}"))
    };
    Ok(Estimate {
        mean: number(&mean["point_estimate"], "mean.point_estimate")?,
        lower: number(
            &mean["confidence_interval"]["lower_bound"],
            "mean.confidence_interval.lower_bound",
        )?,
        upper: number(
            &mean["confidence_interval"]["upper_bound"],
            "mean.confidence_interval.upper_bound",
        )?,
    })
}

/// One ratio a target is stated in.
struct Target {
    /// What is divided by what.
    what: &'static str,
    /// The ratio, if the divisor is positive.
    ratio: Option<f64>,
    /// The largest ratio that meets the target.
    at_most: f64,
}

/// The report, in markdown.
fn render(figures: &Figures) -> String {
    let ns = |group: &'static str, function: &'static str| figures[&(group, function)].mean;
    let overhead = |group, function| ns(group, function) - ns(group, "bare");
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);

    let mut out = String::new();
    render_groups(&mut out, figures, GROUPS);

    let count = overhead("breaker", "rampart_count");
    let time = overhead("breaker", "rampart_time");
    let tr_breaker = overhead("breaker", "tower_resilience");
    let limit = overhead("bulkhead", "tower_concurrency_limit");
    let bulkhead = overhead("bulkhead", "rampart");
    let aged = ns("breaker_time_window_aged", "rampart_time");
    let fresh = ns("breaker", "rampart_time");

    let targets = [
        Target {
            what: "`rampart_count` overhead ÷ tower `ConcurrencyLimit` overhead",
            ratio: ratio(count, limit),
            at_most: 1.5,
        },
        Target {
            what: "`rampart_count` overhead ÷ tower-resilience breaker overhead",
            ratio: ratio(count, tr_breaker),
            at_most: 0.25,
        },
        Target {
            what: "`rampart_time` overhead ÷ tower-resilience breaker overhead",
            ratio: ratio(time, tr_breaker),
            at_most: 0.25,
        },
        Target {
            what: "aged `rampart_time` ÷ fresh `rampart_time` (ns/call; O(1) = the same)",
            ratio: ratio(aged, fresh),
            at_most: SAME_COST,
        },
        Target {
            what: "bulkhead `rampart` overhead ÷ tower `ConcurrencyLimit` overhead",
            ratio: ratio(bulkhead, limit),
            at_most: 1.2,
        },
    ];
    render_targets(&mut out, "Targets", &targets);

    let rate_global = overhead("rate_limit", "rampart_global");
    let issue3 = [
        Target {
            what: "retry `rampart_no_retry` overhead ÷ `tower_retry` overhead (both with a budget)",
            ratio: ratio(
                overhead("retry", "rampart_no_retry"),
                overhead("retry", "tower_retry"),
            ),
            at_most: 1.5,
        },
        Target {
            what: "rate limit `rampart_global` overhead ÷ `governor_direct` overhead",
            ratio: ratio(rate_global, overhead("rate_limit", "governor_direct")),
            at_most: 2.0,
        },
        Target {
            what: "rate limit `rampart_global` overhead ÷ tower-resilience overhead",
            ratio: ratio(rate_global, overhead("rate_limit", "tower_resilience")),
            at_most: 0.25,
        },
        Target {
            what: "queue `rampart` ÷ `tower_buffer` (ns/call)",
            ratio: ratio(ns("queue", "rampart"), ns("queue", "tower_buffer")),
            at_most: 1.0,
        },
    ];
    render_targets(&mut out, "Issue 3 targets", &issue3);

    let informational = [
        (
            "aged tower-resilience time window ÷ aged `rampart_time` (ns/call)",
            ratio(
                ns("breaker_time_window_aged", "tower_resilience_time"),
                aged,
            ),
        ),
        (
            "`failsafe` overhead ÷ `rampart_count` overhead",
            ratio(overhead("breaker", "failsafe"), count),
        ),
        (
            "bulkhead `rampart` overhead ÷ tower-resilience bulkhead overhead",
            ratio(bulkhead, overhead("bulkhead", "tower_resilience")),
        ),
        (
            "contended: `breaker_rampart` ÷ `breaker_tower_resilience`",
            ratio(
                ns("contended", "breaker_rampart"),
                ns("contended", "breaker_tower_resilience"),
            ),
        ),
        (
            "contended: `bulkhead_rampart` ÷ `tower_concurrency_limit`",
            ratio(
                ns("contended", "bulkhead_rampart"),
                ns("contended", "tower_concurrency_limit"),
            ),
        ),
        (
            "timeout `rampart` overhead ÷ `tower_timeout` overhead",
            ratio(
                overhead("timeout", "rampart"),
                overhead("timeout", "tower_timeout"),
            ),
        ),
        (
            "retry `rampart_no_retry` overhead ÷ tower-resilience retry overhead",
            ratio(
                overhead("retry", "rampart_no_retry"),
                overhead("retry", "tower_resilience"),
            ),
        ),
        (
            "retry `rampart_no_budget` overhead ÷ `tower_retry_no_budget` overhead",
            ratio(
                overhead("retry", "rampart_no_budget"),
                overhead("retry", "tower_retry_no_budget"),
            ),
        ),
        (
            "rate limit `rampart_keyed` overhead ÷ `rampart_global` overhead",
            ratio(overhead("rate_limit", "rampart_keyed"), rate_global),
        ),
        (
            "contended: `queue_rampart` ÷ `tower_buffer`",
            ratio(
                ns("contended", "queue_rampart"),
                ns("contended", "tower_buffer"),
            ),
        ),
    ];
    render_informational(&mut out, &informational);
    out
}

/// One table per group: ns/call, its confidence interval, and the
/// overhead over the group's `bare` function when it has one. A group
/// [load] left out (optional, not run) gets a line saying so.
fn render_groups(out: &mut String, figures: &Figures, groups: &[(&'static str, &[&'static str])]) {
    for &(group, functions) in groups {
        let _ = writeln!(out, "### `{group}`\n");
        if !functions.iter().any(|&f| figures.contains_key(&(group, f))) {
            let _ = writeln!(
                out,
                "Not measured: the bench skipped this group (it says why when it runs).\n"
            );
            continue;
        }
        let bare = functions
            .contains(&"bare")
            .then(|| figures[&(group, "bare")].mean);
        if bare.is_some() {
            let _ = writeln!(
                out,
                "| function | ns/call (mean) | 95% CI | overhead over `bare`, ns |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|");
        } else {
            let _ = writeln!(out, "| function | ns/call (mean) | 95% CI |");
            let _ = writeln!(out, "|---|---:|---:|");
        }
        for &function in functions {
            let Some(&e) = figures.get(&(group, function)) else {
                let _ = writeln!(
                    out,
                    "| `{function}` | not measured (the bench skipped it) | |"
                );
                continue;
            };
            let _ = write!(
                out,
                "| `{function}` | {:.2} | {:.2} – {:.2} |",
                e.mean, e.lower, e.upper
            );
            if let Some(bare) = bare {
                let _ = write!(out, " {:.2} |", e.mean - bare);
            }
            out.push('\n');
        }
        out.push('\n');
    }
}

/// The report of the `cache` bench (issue 4). Its peers are stores, not a
/// bare service: the targets are ratios of ns/call.
fn render_cache(figures: &Figures) -> String {
    let ns = |group: &'static str, function: &'static str| {
        figures.get(&(group, function)).map(|e| e.mean)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };

    let mut out = String::new();
    render_groups(&mut out, figures, CACHE_GROUPS);
    let targets = [
        Target {
            what: "`rampart_local_hit` ÷ `moka_future_get` (ns/call)",
            ratio: ratio(
                ns("cache_hit", "rampart_local_hit"),
                ns("cache_hit", "moka_future_get"),
            ),
            at_most: 1.3,
        },
        Target {
            what: "`rampart_absent_key_rejected` ÷ `bloomfilter_check` (ns/call)",
            ratio: ratio(
                ns("bloom", "rampart_absent_key_rejected"),
                ns("bloom", "bloomfilter_check"),
            ),
            at_most: 2.0,
        },
        Target {
            what: "`rampart_two_tier_remote_hit` ÷ `redis_get_raw` (ns/call)",
            ratio: ratio(
                ns("cache_remote", "rampart_two_tier_remote_hit"),
                ns("cache_remote", "redis_get_raw"),
            ),
            at_most: 1.2,
        },
    ];
    render_targets(&mut out, "Cache targets (issue 4)", &targets);

    let informational = [
        (
            "`tower_resilience_cache_hit` ÷ `moka_future_get`",
            ratio(
                ns("cache_hit", "tower_resilience_cache_hit"),
                ns("cache_hit", "moka_future_get"),
            ),
        ),
        (
            "`rampart_local_hit` ÷ `tower_resilience_cache_hit`",
            ratio(
                ns("cache_hit", "rampart_local_hit"),
                ns("cache_hit", "tower_resilience_cache_hit"),
            ),
        ),
        (
            "`rampart_two_tier_local_hit` ÷ `rampart_local_hit`",
            ratio(
                ns("cache_remote", "rampart_two_tier_local_hit"),
                ns("cache_hit", "rampart_local_hit"),
            ),
        ),
    ];
    render_informational(&mut out, &informational);
    out
}

/// The report of the `discovery` bench (issue 5). The issue sets no
/// targets: each rampart function is set beside the primitive a
/// hand-written registry or config store would use.
fn render_discovery(figures: &Figures) -> String {
    let ns = |group: &'static str, function: &'static str| {
        figures.get(&(group, function)).map(|e| e.mean)
    };
    let ratio = |group, a, b| match (ns(group, a), ns(group, b)) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let mut out = String::new();
    render_groups(&mut out, figures, DISCOVERY_GROUPS);
    let informational = [
        (
            "`memory_discover` ÷ `mutex_map_discover`",
            ratio("registry", "memory_discover", "mutex_map_discover"),
        ),
        (
            "`etcd_discover` ÷ `etcd_client_discover`",
            ratio("registry", "etcd_discover", "etcd_client_discover"),
        ),
        (
            "`memory_get` ÷ `rwlock_map_get`",
            ratio("config", "memory_get", "rwlock_map_get"),
        ),
        (
            "`memory_watch_fanout_1000` ÷ `tokio_watch_fanout_1000`",
            ratio(
                "config",
                "memory_watch_fanout_1000",
                "tokio_watch_fanout_1000",
            ),
        ),
        (
            "`etcd_put_to_watch_latency` ÷ `etcd_client_put_to_watch_latency`",
            ratio(
                "config",
                "etcd_put_to_watch_latency",
                "etcd_client_put_to_watch_latency",
            ),
        ),
    ];
    render_informational(&mut out, &informational);
    out
}

/// The report of the `balance` bench (issue 6): every strategy beside
/// tower's p2c on peak EWMA, and the one target.
fn render_balance(figures: &Figures) -> String {
    let ns = |function: &'static str| figures.get(&("pick", function)).map(|e| e.mean);
    let vs_tower = |function: &'static str| match (ns(function), ns("tower_p2c_ewma")) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let mut out = String::new();
    render_groups(&mut out, figures, BALANCE_GROUPS);
    let targets = [Target {
        what: "`rampart_p2c_ewma` ÷ `tower_p2c_ewma` (ns/call)",
        ratio: vs_tower("rampart_p2c_ewma"),
        at_most: 1.2,
    }];
    render_targets(&mut out, "Balance target (issue 6)", &targets);
    let informational = [
        (
            "`rampart_round_robin` ÷ `tower_p2c_ewma`",
            vs_tower("rampart_round_robin"),
        ),
        (
            "`rampart_swrr` ÷ `tower_p2c_ewma`",
            vs_tower("rampart_swrr"),
        ),
        (
            "`rampart_ring_hash` ÷ `tower_p2c_ewma`",
            vs_tower("rampart_ring_hash"),
        ),
        (
            "`rampart_maglev` ÷ `tower_p2c_ewma`",
            vs_tower("rampart_maglev"),
        ),
    ];
    render_informational(&mut out, &informational);
    out
}

/// The table of ratios that have no target.
fn render_informational(out: &mut String, ratios: &[(&str, Option<f64>)]) {
    let _ = writeln!(out, "### Other ratios (no target)\n");
    let _ = writeln!(out, "| ratio | measured |");
    let _ = writeln!(out, "|---|---:|");
    for (what, r) in ratios {
        let measured = r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}"));
        let _ = writeln!(out, "| {what} | {measured} |");
    }
}

/// One table of targets, each with its verdict.
fn render_targets(out: &mut String, title: &str, targets: &[Target]) {
    let _ = writeln!(out, "### {title}\n");
    let _ = writeln!(out, "| ratio | measured | target | result |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    for t in targets {
        let (measured, result) = match t.ratio {
            Some(r) if r <= t.at_most => (format!("{r:.3}"), "pass"),
            Some(r) => (format!("{r:.3}"), "**MISS**"),
            None => ("n/a".to_owned(), "n/a (not measured, or divisor ≤ 0)"),
        };
        let _ = writeln!(
            out,
            "| {} | {measured} | ≤ {} | {result} |",
            t.what, t.at_most
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_itself() {
        let dir = std::env::temp_dir().join("rampart-bench-report-empty");
        let err = load(&dir, Bench::Layers).unwrap_err();
        assert!(
            err.contains("breaker/rampart_count/new/estimates.json"),
            "{err}"
        );
        assert!(
            err.contains("rate_limit/governor_direct/new/estimates.json"),
            "{err}"
        );
        let all: usize = GROUPS.iter().map(|(_, functions)| functions.len()).sum();
        assert!(
            err.contains(&format!("{all} of the bench's estimates")),
            "{err}"
        );
    }

    /// An estimate of `mean` with a zero-width interval.
    fn exactly(mean: f64) -> Estimate {
        Estimate {
            mean,
            lower: mean,
            upper: mean,
        }
    }

    /// Writes a minimal criterion `estimates.json` of `mean` for
    /// `group/function` under `dir`.
    fn write_estimate(dir: &Path, group: &str, function: &str, mean: f64) {
        let path = dir.join(group).join(function).join("new");
        std::fs::create_dir_all(&path).unwrap();
        let json = format!(
            r#"{{"mean":{{"point_estimate":{mean},"confidence_interval":{{"lower_bound":{mean},"upper_bound":{mean}}}}}}}"#
        );
        std::fs::write(path.join("estimates.json"), json).unwrap();
    }

    /// A fresh, empty directory of its own for one test.
    fn empty_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rampart-bench-report-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_cache_report_names_its_missing_files_and_may_lack_redis() {
        let dir = empty_dir("cache-empty");
        let err = load(&dir, Bench::Cache).unwrap_err();
        assert!(
            err.contains("bloom/rampart_absent_key_rejected/new/estimates.json"),
            "{err}"
        );
        assert!(err.contains("--bench cache"), "{err}");
        // `cache_remote` absent as a whole is "not measured", not missing.
        assert!(!err.contains("cache_remote"), "{err}");
        let required: usize = CACHE_GROUPS
            .iter()
            .filter(|(group, _)| optional_part(group, "").is_none())
            .map(|(_, functions)| functions.len())
            .sum();
        assert!(
            err.contains(&format!("{required} of the bench's estimates")),
            "{err}"
        );

        // Every required group present: the report loads.
        for &(group, functions) in CACHE_GROUPS {
            if optional_part(group, "").is_none() {
                for function in functions {
                    write_estimate(&dir, group, function, 10.0);
                }
            }
        }
        let figures = load(&dir, Bench::Cache).unwrap();
        let report = render_cache(&figures);
        assert!(report.contains("Not measured"), "{report}");
        assert!(
            report.contains("| `rampart_two_tier_remote_hit` ÷ `redis_get_raw` (ns/call) | n/a |"),
            "{report}"
        );

        // Part of an optional group is an error naming the rest.
        write_estimate(&dir, "cache_remote", "redis_get_raw", 20_000.0);
        let err = load(&dir, Bench::Cache).unwrap_err();
        assert!(
            err.contains("cache_remote/rampart_two_tier_remote_hit/new/estimates.json"),
            "{err}"
        );
        assert!(err.contains("2 of the bench's estimates"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_discovery_report_may_lack_etcd_but_not_a_memory_figure() {
        let dir = empty_dir("discovery");
        let err = load(&dir, Bench::Discovery).unwrap_err();
        assert!(
            err.contains("config/memory_watch_fanout_1000/new/estimates.json"),
            "{err}"
        );
        assert!(!err.contains("etcd_"), "{err}");
        assert!(err.contains("7 of the bench's estimates"), "{err}");
        for &(group, functions) in DISCOVERY_GROUPS {
            for function in functions.iter().filter(|f| !f.starts_with("etcd_")) {
                write_estimate(&dir, group, function, 100.0);
            }
        }
        let report = render_discovery(&load(&dir, Bench::Discovery).unwrap());
        assert!(
            report.contains("| `etcd_discover` | not measured (the bench skipped it) | |"),
            "{report}"
        );
        assert!(
            report.contains("| `memory_get` ÷ `rwlock_map_get` | 1.000 |"),
            "{report}"
        );
        assert!(
            report.contains("| `etcd_discover` ÷ `etcd_client_discover` | n/a |"),
            "{report}"
        );
        // one etcd figure of a group present: the rest of its part is missing
        write_estimate(&dir, "config", "etcd_put_to_watch_latency", 900_000.0);
        let err = load(&dir, Bench::Discovery).unwrap_err();
        assert!(
            err.contains("config/etcd_client_put_to_watch_latency/new/estimates.json"),
            "{err}"
        );
        assert!(err.contains("1 of the bench's estimates"), "{err}");
        write_estimate(
            &dir,
            "config",
            "etcd_client_put_to_watch_latency",
            450_000.0,
        );
        let report = render_discovery(&load(&dir, Bench::Discovery).unwrap());
        assert!(
            report.contains(
                "| `etcd_put_to_watch_latency` ÷ `etcd_client_put_to_watch_latency` | 2.000 |"
            ),
            "{report}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn renders_the_balance_target() {
        let figures: Figures = [
            ("rampart_round_robin", 50.0),
            ("rampart_swrr", 60.0),
            ("rampart_p2c_ewma", 110.0), // 1.1 ≤ 1.2
            ("tower_p2c_ewma", 100.0),
            ("rampart_ring_hash", 70.0),
            ("rampart_maglev", 65.0),
        ]
        .into_iter()
        .map(|(f, mean)| (("pick", f), exactly(mean)))
        .collect();
        let report = render_balance(&figures);
        assert!(
            report.contains(
                "| `rampart_p2c_ewma` ÷ `tower_p2c_ewma` (ns/call) | 1.100 | ≤ 1.2 | pass |"
            ),
            "{report}"
        );
        assert!(
            report.contains("| `rampart_maglev` ÷ `tower_p2c_ewma` | 0.650 |"),
            "{report}"
        );
        let err = load(&empty_dir("balance"), Bench::Balance).unwrap_err();
        assert!(
            err.contains("pick/tower_p2c_ewma/new/estimates.json"),
            "{err}"
        );
        assert!(err.contains("6 of the bench's estimates"), "{err}");
    }

    #[test]
    fn renders_every_cache_target() {
        let figures: Figures = [
            (("cache_hit", "moka_future_get"), 100.0),
            (("cache_hit", "rampart_local_hit"), 125.0), // 1.25 ≤ 1.3
            (("cache_hit", "tower_resilience_cache_hit"), 90.0),
            (("cache_remote", "redis_get_raw"), 20_000.0),
            (("cache_remote", "rampart_two_tier_local_hit"), 150.0),
            (("cache_remote", "rampart_two_tier_remote_hit"), 25_000.0), // 1.25 > 1.2
            (("bloom", "bloomfilter_check"), 20.0),
            (("bloom", "rampart_absent_key_rejected"), 40.0), // 2.0 ≤ 2
        ]
        .into_iter()
        .map(|(id, mean)| (id, exactly(mean)))
        .collect();
        let report = render_cache(&figures);
        assert_eq!(report.matches("| pass |").count(), 2, "{report}");
        assert_eq!(report.matches("**MISS**").count(), 1, "{report}");
        assert!(
            report.contains("| `rampart_two_tier_remote_hit` ÷ `redis_get_raw` (ns/call) | 1.250 | ≤ 1.2 | **MISS** |"),
            "{report}"
        );
        assert!(report.contains("### `cache_remote`"), "{report}");
        assert!(!report.contains("Not measured"), "{report}");
    }

    #[test]
    fn renders_every_target() {
        let mut figures = Figures::new();
        for &(group, functions) in GROUPS {
            for &function in functions {
                let mean = if function == "bare" { 1.0 } else { 10.0 };
                figures.insert((group, function), exactly(mean));
            }
        }
        let report = render(&figures);
        // Every ratio is 1: the ≤ 0.25 targets miss, the others pass.
        assert_eq!(report.matches("| pass |").count(), 6, "{report}");
        assert_eq!(report.matches("**MISS**").count(), 3, "{report}");
        assert!(report.contains("### `queue`"), "{report}");
        assert!(report.contains("### Issue 3 targets"), "{report}");
    }
}
