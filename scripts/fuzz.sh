#!/usr/bin/env bash
# Runs every Go fuzz target in the repo for a short time, one invocation each
# (go test -fuzz takes one target per package per run).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
status=0
while IFS= read -r line; do
  file=${line%%:*}
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/' <<<"${line#*:}")
  pkg=./$(dirname "$file")
  printf '==> fuzz %s %s (%s)\n' "$pkg" "$name" "$fuzztime"
  if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"; then
    status=1
  fi
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . | grep -v '/testdata/' | sed -E 's#^\./##' | cut -d: -f1,3-)
exit $status
