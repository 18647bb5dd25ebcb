#!/usr/bin/env bash
# Builds and runs the serverless benchmarks (make bench-serverless): cold start,
# density under a memory budget and memory return, against bin/nimbus started as
# a child process. Extra arguments go to serverlessbench, e.g. -quick, or
# -only cold -cold-samples 200. The report goes to
# bench/results/serverless-<UTC timestamp>.md (gitignored) and stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
if [ ! -x bin/nimbus ]; then
	echo "bench: bin/nimbus is missing; run make build (make bench-serverless does)" >&2
	exit 1
fi
mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
bin=bench/results/serverlessbench
"$GO" build -o "$bin" ./bench/cmd/serverlessbench

out=bench/results/serverless-$stamp.md
"$bin" -nimbus bin/nimbus -out "$out" -command "${BENCH_COMMAND:-bench/serverless.sh $*}" "$@"
echo
echo "report written to $out"
