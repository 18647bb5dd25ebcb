#!/usr/bin/env bash
# install-ort.sh installs the ONNX Runtime shared library Nimbus's onnx runtime loads
# at run time (dlopen), into .deps/onnxruntime/ at the repository root.
#
# The library comes from the official npm package onnxruntime-node, which ships a
# prebuilt libonnxruntime.so.1 for linux/x64. `npm pack` fetches the tarball only
# (no post-install scripts run); just that one file is extracted.
#
# Idempotent: does nothing when the right version is already installed.
#
# Environment:
#   NIMBUS_ORT_VERSION  onnxruntime-node version to install (default 1.24.1; the Go
#                       binding needs ORT C API 24, i.e. >= 1.24)
#   NIMBUS_ORT_TARBALL  path to an already downloaded onnxruntime-node-<version>.tgz
#                       to use instead of running `npm pack`
#   NIMBUS_ORT_FORCE=1  reinstall even if the right version is present
set -euo pipefail

version="${NIMBUS_ORT_VERSION:-1.24.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.deps/onnxruntime"
lib="libonnxruntime.so.1"
member="package/bin/napi-v6/linux/x64/$lib"

say() { printf 'install-ort: %s\n' "$*"; }
die() { printf 'install-ort: error: %s\n' "$*" >&2; exit 1; }

os="$(uname -s)"
arch="$(uname -m)"
if [[ "$os" != "Linux" || ( "$arch" != "x86_64" && "$arch" != "amd64" ) ]]; then
	die "only linux/x64 is supported by this script (this is $os/$arch); install ONNX Runtime >= 1.24 yourself and set NIMBUS_ORT_LIB to its libonnxruntime shared library"
fi

if [[ "${NIMBUS_ORT_FORCE:-0}" != "1" && -f "$dest/$lib" && -f "$dest/VERSION" ]] &&
	[[ "$(cat "$dest/VERSION")" == "$version" ]]; then
	say "ONNX Runtime $version already installed in $dest"
	exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

tarball="${NIMBUS_ORT_TARBALL:-}"
if [[ -n "$tarball" ]]; then
	[[ -f "$tarball" ]] || die "NIMBUS_ORT_TARBALL=$tarball does not exist"
	say "using tarball $tarball"
else
	command -v npm >/dev/null 2>&1 ||
		die "npm is required to download onnxruntime-node@$version (install Node.js/npm, or set NIMBUS_ORT_TARBALL to a downloaded onnxruntime-node-$version.tgz)"
	say "downloading onnxruntime-node@$version with npm pack (about 86 MB)..."
	packed="$(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" | tail -n 1)" ||
		die "npm pack onnxruntime-node@$version failed (no network or registry access?)"
	tarball="$tmp/$packed"
	[[ -n "$packed" && -f "$tarball" ]] || die "npm pack did not produce a tarball (got '$packed')"
fi

say "extracting $member"
tar -xzf "$tarball" -C "$tmp" "$member" 2>/dev/null ||
	die "$tarball does not contain $member (is it onnxruntime-node $version?)"

mkdir -p "$dest"
# Install atomically: a concurrent reader never sees a half-written library.
install -m 0755 "$tmp/$member" "$dest/$lib.tmp.$$"
mv -f "$dest/$lib.tmp.$$" "$dest/$lib"
printf '%s\n' "$version" >"$dest/VERSION.tmp.$$"
mv -f "$dest/VERSION.tmp.$$" "$dest/VERSION"
say "installed ONNX Runtime $version: $dest/$lib"
