//! Turns the estimates of `cargo bench -p rampart-benches --bench layers`
//! into the markdown tables of `docs/benchmarks.md`: nanoseconds per call,
//! overhead over the bare service, the ratios the targets are stated in,
//! and whether each target is met.
//!
//! ```text
//! cargo run -p rampart-benches --bin bench-report [CRITERION_DIR]
//! ```
//!
//! `CRITERION_DIR` defaults to `$CARGO_TARGET_DIR/criterion`, or the
//! workspace's `target/criterion`. Each figure is the mean point estimate
//! of `<group>/<function>/new/estimates.json`. A missing file is an error
//! (exit status 1) that names every file missing; a missed target is not.

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

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(default_dir, PathBuf::from);
    match load(&dir) {
        Ok(figures) => {
            let report = render(&figures);
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

/// Reads every estimate, or says which files are missing or unreadable.
fn load(dir: &Path) -> Result<Figures, String> {
    let mut figures = Figures::new();
    let mut problems = Vec::new();
    for &(group, functions) in GROUPS {
        for &function in functions {
            let path = dir
                .join(group)
                .join(function)
                .join("new")
                .join("estimates.json");
            match read_estimate(&path) {
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
             run `cargo bench -p rampart-benches --bench layers` first \
             (the whole bench, no filter), or pass the criterion directory",
            problems.len(),
            problems.join("\n")
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
    for &(group, functions) in GROUPS {
        let has_bare = functions.contains(&"bare");
        let _ = writeln!(out, "### `{group}`\n");
        if has_bare {
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
            let e = figures[&(group, function)];
            let _ = write!(
                out,
                "| `{function}` | {:.2} | {:.2} – {:.2} |",
                e.mean, e.lower, e.upper
            );
            if has_bare {
                let _ = write!(out, " {:.2} |", overhead(group, function));
            }
            out.push('\n');
        }
        out.push('\n');
    }

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
    let _ = writeln!(out, "### Other ratios (no target)\n");
    let _ = writeln!(out, "| ratio | measured |");
    let _ = writeln!(out, "|---|---:|");
    for (what, r) in informational {
        let measured = r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}"));
        let _ = writeln!(out, "| {what} | {measured} |");
    }
    out
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
            None => ("n/a".to_owned(), "n/a (divisor ≤ 0)"),
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
        let err = load(&dir).unwrap_err();
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

    #[test]
    fn renders_every_target() {
        let mut figures = Figures::new();
        for &(group, functions) in GROUPS {
            for &function in functions {
                let mean = if function == "bare" { 1.0 } else { 10.0 };
                figures.insert(
                    (group, function),
                    Estimate {
                        mean,
                        lower: mean,
                        upper: mean,
                    },
                );
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
