#!/usr/bin/env bash
# Builds and runs the benchmark suite (make bench): Nimbus REST and gRPC with
# batching off and on, bare servers, raw ONNX Runtime and the Node.js peer, with our
# closed- and open-loop clients and, where installed, wrk and ghz. Extra arguments
# go to nimbusbench, e.g. bench/run.sh -quick, or -models mlp -concurrency 1,64.
# bench/run.sh -matrix ... runs the first benchmark's layer-by-layer path matrix
# instead. The report goes to bench/results/<UTC timestamp>.md (gitignored) and stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
bin=bench/results/nimbusbench
"$GO" build -o "$bin" ./bench/cmd/nimbusbench
case " $* " in
*" -pin "*) "$GO" build -o bin/nimbus ./cmd/nimbus ;; # pinned runs start it as a child process
esac

mode=(-suite)
args=("$@")
if [ ${#args[@]} -gt 0 ] && [ "${args[0]}" = "-matrix" ]; then
	mode=()
	args=("${args[@]:1}")
	[ ${#args[@]} -eq 0 ] && args=(-duration 5s)
fi

if [ ${#mode[@]} -gt 0 ]; then
	# Optional peers and load generators: say what is missing, never fail on it.
	command -v wrk >/dev/null || echo "bench: wrk not installed (apt-get install -y wrk); its cells are skipped" >&2
	gobin=$("$GO" env GOBIN); [ -n "$gobin" ] || gobin=$("$GO" env GOPATH)/bin
	command -v ghz >/dev/null || [ -x "$gobin/ghz" ] ||
		echo "bench: ghz not installed (go install github.com/bojand/ghz/cmd/ghz@latest, ~5 min); its cells are skipped" >&2
	peer=bench/peers/node
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		echo "bench: node/npm not installed; the Node peer is skipped" >&2
	elif [ ! -d "$peer/node_modules/onnxruntime-node" ]; then
		echo "bench: installing the Node peer's deps (onnxruntime-node, ~90 MB download)" >&2
		# The package's post-install step fetches CUDA parts and fails offline; the CPU
		# library it needs ships inside the package.
		(cd "$peer" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund) ||
			echo "bench: npm install failed; the Node peer is skipped" >&2
	fi
	if [ -d "$peer/node_modules/onnxruntime-node" ] &&
		! (cd "$peer" && node -e 'require("onnxruntime-node")' 2>/dev/null); then
		echo "bench: onnxruntime-node is installed but does not load here; the Node peer will report why" >&2
	fi
fi

out=bench/results/$stamp.md
"$bin" "${mode[@]}" -out "$out" -command "bench/run.sh ${*}" "${args[@]}"
echo
echo "report written to $out"
