#!/usr/bin/env bash
# Instructions per call of each layer, counted by callgrind: the difference
# between 20,000 and 10,000 calls, divided by 10,000 (start-up cancels out).
# Repeatable whatever else the machine is doing. Needs valgrind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -q --release -p rampart-benches --example ir_probe
bin=target/release/examples/ir_probe
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 \
        | awk '/refs:/ { gsub(",", "", $4); print $4 }'
}
printf '| layer | instructions per call | over bare |\n|---|---:|---:|\n'
bare=""
for layer in ${LAYERS:-bare breaker_count breaker_time bulkhead tower_concurrency_limit retry retry_no_budget tower_retry rate_limit}; do
    a=$(count "$layer" 10000)
    b=$(count "$layer" 20000)
    per=$(( (b - a) / 10000 ))
    [[ -n "$bare" ]] || bare=$per
    printf '| `%s` | %d | %d |\n' "$layer" "$per" $(( per - bare ))
done
