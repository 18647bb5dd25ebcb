#!/usr/bin/env bash
# Builds and runs the serving-core benchmark (make bench). Extra arguments go to
# nimbusbench, e.g. bench/run.sh -quick, or -models mlp -batches 1 -concurrency 1,8.
# The report goes to bench/results/<UTC timestamp>.md (gitignored) and to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
bin=bench/results/nimbusbench
"$GO" build -o "$bin" ./bench/cmd/nimbusbench

args=("$@")
[ ${#args[@]} -eq 0 ] && args=(-duration 5s)
out=bench/results/$stamp.md
"$bin" -out "$out" -command "bench/run.sh ${args[*]}" "${args[@]}"
echo
echo "report written to $out"
