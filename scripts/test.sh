#!/usr/bin/env bash
# The workspace's test command (what CI runs through .ci/run).
#
#   scripts/test.sh                 every step, in order
#   scripts/test.sh fmt clippy      only the named steps, in the order given
#
# Steps: services fmt clippy test loom doc deny. Stops at the first failing
# step and exits with its status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL_STEPS=(services fmt clippy test loom doc deny)

# === steps ===
# Each step runs as `step_NAME || rc=$?`, where bash ignores `set -e`, so a
# step with several commands checks each one (`|| return`).

step_services() {
    # services.sh prints only `export NAME=value` lines on stdout.
    local exports
    exports="$(bash scripts/services.sh)" || return
    eval "$exports" || return
    printf '%s\n' "$exports"
}

step_fmt() {
    cargo fmt --all --check
}

step_clippy() {
    cargo clippy --workspace --all-targets --all-features -- -D warnings
}

step_test() {
    cargo test --workspace --all-features
}

# Model checks of the lock-free state machines, for every crate that has a
# `tests/loom.rs` (gated by `#![cfg(rampart_loom)]`). Own target dir so the
# `--cfg` does not invalidate the normal build.
step_loom() {
    local file dir name pkgs=()
    for file in crates/*/tests/loom.rs; do
        [[ -f "$file" ]] || continue
        dir="${file%/tests/loom.rs}"
        name="$(awk -F'"' '/^\[/ { in_pkg = ($0 == "[package]") } in_pkg && /^name *=/ { print $2; exit }' "$dir/Cargo.toml")"
        [[ -n "$name" ]] || { echo "cannot read the package name in $dir/Cargo.toml" >&2; return 1; }
        pkgs+=(-p "$name")
    done
    if [[ ${#pkgs[@]} -eq 0 ]]; then
        echo "no crates/*/tests/loom.rs yet; nothing to model-check"
        return 0
    fi
    echo "loom: ${pkgs[*]}"
    RUSTFLAGS="--cfg rampart_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
        cargo test --release "${pkgs[@]}" --test loom
}

step_doc() {
    RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --all-features
}

step_deny() {
    if ! cargo deny --version >/dev/null 2>&1; then
        echo "cargo-deny not found; installing it (deny.toml is written for 0.20)"
        cargo install --locked cargo-deny --version '^0.20' || return
    fi
    cargo deny --version || return
    cargo deny check bans licenses sources
}

# === runner ===

steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=("${ALL_STEPS[@]}")
for s in "${steps[@]}"; do
    [[ " ${ALL_STEPS[*]} " == *" $s "* ]] || {
        echo "test.sh: unknown step '$s' (steps: ${ALL_STEPS[*]})" >&2
        exit 2
    }
done

summary=()
total_start=$SECONDS
for s in "${steps[@]}"; do
    printf '\n==> [%s] started %s\n' "$s" "$(date +%H:%M:%S)"
    start=$SECONDS
    rc=0
    "step_$s" || rc=$?
    took=$((SECONDS - start))
    if [[ $rc -ne 0 ]]; then
        printf '\n==> [%s] FAILED (exit %d) after %ds\n' "$s" "$rc" "$took" >&2
        exit "$rc"
    fi
    printf '==> [%s] ok in %ds\n' "$s" "$took"
    summary+=("$(printf '%-9s %5ds' "$s" "$took")")
done

printf '\n==> all steps passed in %ds\n' "$((SECONDS - total_start))"
printf '    %s\n' "${summary[@]}"
