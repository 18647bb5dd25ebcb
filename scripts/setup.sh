#!/usr/bin/env bash
# Installs what a fresh machine lacks to build, run and test Nimbus. Idempotent:
# each step checks first and says what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed: get Go 1.26 or newer from https://go.dev/dl and put it on PATH"
goversion=$(go env GOVERSION | sed 's/^go//')
case "$goversion" in
  1.2[6-9]*|1.[3-9]*|[2-9]*) ;;
  *) die "Go $goversion is too old: Nimbus needs Go 1.26 or newer" ;;
esac
if ! command -v gcc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing gcc (cgo is needed for ONNX Runtime)"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
  else
    die "gcc is not installed: cgo needs a C compiler (Debian: apt-get install gcc)"
  fi
fi
say "Go $goversion, $(gcc --version | head -n1)"

scripts/install-ort.sh

say "downloading Go modules"
go mod download
say "setup complete"
