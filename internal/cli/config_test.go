package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// fixedSig cannot batch: its input has no dynamic first dimension.
var fixedSig = tensor.Signature{
	Inputs:  []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{1, 4}}},
	Outputs: []tensor.TensorSpec{{Name: "label", DataType: tensor.Int64, Shape: []int64{1}}},
}

var setBatching = []string{"--max-batch-size", "64", "--max-queue-delay", "2ms", "--preferred-batch-sizes", "16,32"}

func ms(n int) registry.Duration { return registry.Duration(time.Duration(n) * time.Millisecond) }

func TestConfigServing(t *testing.T) {
	batching := &registry.BatchingConfig{MaxBatchSize: 64, MaxQueueDelay: ms(2), PreferredBatchSizes: []int{16, 32}}
	tests := []struct {
		name  string
		sig   *tensor.Signature // default testSig
		setup [][]string        // config flag sets run first, each must succeed
		args  []string          // after "models config churn"
		code  int
		// want is the exact stdout; outHas and errHas are parts of stdout and stderr.
		want, outHas, errHas string
		// wantView, when set, is compared with the -o json view of the result.
		wantView *servingView
	}{
		{
			name: "show defaults",
			want: `MODEL  churn
threads         1 (default)
interOpThreads  1 (default)
batching        off
instances       max=1 (default)
maxQueueSize    1024 (default)
timeout         none
idleTimeout     15m0s (default)
warmup          off
`,
		},
		{
			name: "set batching",
			args: setBatching,
			want: `MODEL  churn
threads         1 (default)
interOpThreads  1 (default)
batching        maxBatchSize=64 maxQueueDelay=2ms preferredBatchSizes=[16,32]
instances       max=1 (default)
maxQueueSize    1024 (default)
timeout         none
idleTimeout     15m0s (default)
warmup          off
`,
			wantView: &servingView{Model: "churn", Serving: registry.ServingConfig{Batching: batching},
				Effective: registry.ServingConfig{Threads: 1, InterOpThreads: 1, Batching: batching}},
		},
		{
			name:   "show batching",
			setup:  [][]string{setBatching},
			outHas: "\nbatching        maxBatchSize=64 maxQueueDelay=2ms preferredBatchSizes=[16,32]\n",
		},
		{
			name:   "json output",
			setup:  [][]string{setBatching},
			args:   []string{"-o", "json"},
			outHas: `"maxQueueDelay": "2ms"`,
			wantView: &servingView{Model: "churn", Serving: registry.ServingConfig{Batching: batching},
				Effective: registry.ServingConfig{Threads: 1, InterOpThreads: 1, Batching: batching}},
		},
		{
			name:   "yaml output",
			setup:  [][]string{setBatching},
			args:   []string{"-o", "yaml"},
			outHas: "batching:\n    maxBatchSize: 64\n    maxQueueDelay: 2ms\n    preferredBatchSizes:\n      - 16\n      - 32\n",
		},
		{
			name:     "clear batching",
			setup:    [][]string{setBatching, {"--threads", "2"}},
			args:     []string{"--no-batching"},
			outHas:   "\nbatching        off\n",
			wantView: &servingView{Model: "churn", Serving: registry.ServingConfig{Threads: 2}, Effective: registry.ServingConfig{Threads: 2, InterOpThreads: 1}},
		},
		{
			name:   "timeout keeps batching",
			setup:  [][]string{setBatching},
			args:   []string{"--timeout", "5s"},
			outHas: "\nbatching        maxBatchSize=64 maxQueueDelay=2ms preferredBatchSizes=[16,32]\ninstances       max=1 (default)\nmaxQueueSize    1024 (default)\ntimeout         5s\n",
			wantView: &servingView{Model: "churn",
				Serving:   registry.ServingConfig{Batching: batching, Timeout: registry.Duration(5 * time.Second)},
				Effective: registry.ServingConfig{Threads: 1, InterOpThreads: 1, Batching: batching, Timeout: registry.Duration(5 * time.Second)}},
		},
		{
			name:   "one batching field keeps the others",
			setup:  [][]string{setBatching},
			args:   []string{"--max-queue-delay", "500us"},
			outHas: "\nbatching        maxBatchSize=64 maxQueueDelay=500µs preferredBatchSizes=[16,32]\n",
		},
		{
			name:  "instances and queue",
			setup: [][]string{setBatching},
			args:  []string{"--instances", "2", "--min-instances", "1", "--target-concurrency", "8", "--max-queue-size", "256"},
			want: `MODEL  churn
threads         1 (default)
interOpThreads  1 (default)
batching        maxBatchSize=64 maxQueueDelay=2ms preferredBatchSizes=[16,32]
instances       min=1 max=2 targetConcurrency=8
maxQueueSize    256
timeout         none
idleTimeout     15m0s (default)
warmup          off
`,
		},
		{
			name:   "autoscaling window and warm-up",
			args:   []string{"--instances", "4", "--stable-window", "30s", "--warmup-runs", "2", "--warmup-batch-size", "8"},
			outHas: "\ninstances       max=4 stableWindow=30s\nmaxQueueSize    1024 (default)\ntimeout         none\nidleTimeout     15m0s (default)\nwarmup          runs=2 batchSize=8\n",
		},
		{
			name:   "warm-up sample",
			args:   []string{"--warmup-runs", "3", "--warmup-sample", "testdata/warmup-sample.json"},
			outHas: "\nwarmup          runs=3 sample=x[1,4]\n",
			wantView: &servingView{Model: "churn",
				Serving: registry.ServingConfig{Warmup: &registry.WarmupConfig{Runs: 3, Inputs: []registry.WarmupInput{
					{Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Data: registry.SampleValues{"0.3", "12", "1", "0"}}}}},
				Effective: registry.ServingConfig{Threads: 1, InterOpThreads: 1, Warmup: &registry.WarmupConfig{Runs: 3, Inputs: []registry.WarmupInput{
					{Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Data: registry.SampleValues{"0.3", "12", "1", "0"}}}}}},
		},
		{
			name:   "warm-up sample that does not fit",
			args:   []string{"--warmup-sample", "testdata/warmup-sample-wrong.json"},
			code:   1,
			errHas: "serving.warmup.inputs: version 1: the sample's input x is FP32 [1,3]; the model expects FP32 [-1,4]",
		},
		{
			name:   "warm-up sample file missing",
			args:   []string{"--warmup-sample", "testdata/nope.json"},
			code:   1,
			errHas: "--warmup-sample: open testdata/nope.json",
		},
		{
			name:   "warm-up off again",
			setup:  [][]string{{"--warmup-runs", "2"}},
			args:   []string{"--warmup-runs", "0"},
			outHas: "\nwarmup          off\n",
		},
		{
			name:   "version override starts from the model's batching",
			setup:  [][]string{setBatching, {"--instances", "2"}},
			args:   []string{"--version", "1", "--max-queue-delay", "5ms", "--timeout", "1s"},
			outHas: "\nbatching        maxBatchSize=64 maxQueueDelay=2ms preferredBatchSizes=[16,32]  maxBatchSize=64 maxQueueDelay=5ms preferredBatchSizes=[16,32]  maxBatchSize=64 maxQueueDelay=5ms preferredBatchSizes=[16,32]\n",
		},
		{
			name:  "version table",
			setup: [][]string{setBatching, {"--instances", "2"}},
			args:  []string{"--version", "1", "--no-batching", "--timeout", "1s"},
			want: `MODEL  churn
SETTING         MODEL                                                          VERSION 1  EFFECTIVE
threads         1 (default)                                                    -          1 (default)
interOpThreads  1 (default)                                                    -          1 (default)
batching        maxBatchSize=64 maxQueueDelay=2ms preferredBatchSizes=[16,32]  off        off
instances       max=2                                                          -          max=2
maxQueueSize    1024 (default)                                                 -          1024 (default)
timeout         none                                                           1s         1s
idleTimeout     15m0s (default)                                                -          15m0s (default)
warmup          off                                                            -          off
`,
		},
		{
			name:  "version clear",
			setup: [][]string{setBatching, {"--version", "1", "--no-batching"}},
			args:  []string{"--version", "1", "--clear"},
			wantView: &servingView{Model: "churn", Version: 1, Serving: registry.ServingConfig{Batching: batching},
				Effective: registry.ServingConfig{Threads: 1, InterOpThreads: 1, Batching: batching}},
		},
		{
			name:   "invalid duration",
			args:   []string{"--max-batch-size", "8", "--max-queue-delay", "2x"},
			code:   2,
			errHas: `invalid argument "2x" for "--max-queue-delay" flag: invalid duration "2x": use a number with a unit, e.g. 2ms or 5m`,
		},
		{
			name:   "duration without unit",
			args:   []string{"--timeout", "5"},
			code:   2,
			errHas: `invalid argument "5" for "--timeout" flag: invalid duration "5"`,
		},
		{
			name:   "negative duration",
			args:   []string{"--timeout", "-1s"},
			code:   2,
			errHas: `must not be negative`,
		},
		{
			name:   "invalid batch sizes",
			args:   []string{"--preferred-batch-sizes", "16,x"},
			code:   2,
			errHas: `"16,x" is not a comma-separated list of numbers`,
		},
		{
			name:   "no-batching with batching flags",
			args:   []string{"--no-batching", "--max-batch-size", "8"},
			code:   2,
			errHas: "--no-batching cannot be combined with --max-batch-size",
		},
		{
			name:   "batching field while batching is off",
			args:   []string{"--max-queue-delay", "2ms"},
			code:   2,
			errHas: "batching is off: give --max-batch-size too",
		},
		{
			name:   "clear without version",
			args:   []string{"--clear"},
			code:   2,
			errHas: "--clear needs --version",
		},
		{
			name:   "server validation",
			args:   []string{"--max-batch-size", "8", "--preferred-batch-sizes", "16"},
			code:   1,
			errHas: "Error: set serving settings: serving.batching.preferredBatchSizes[0]: must be between 1 and maxBatchSize (8), got 16",
		},
		{
			name:   "cannot batch",
			sig:    &fixedSig,
			args:   []string{"--max-batch-size", "8"},
			code:   1,
			errHas: "Error: set serving settings: serving.batching.maxBatchSize: version 1 cannot batch: input x has shape [1,4] without a dynamic first (batch) dimension",
		},
		{
			name:   "version cannot batch",
			sig:    &fixedSig,
			args:   []string{"--version", "2", "--max-batch-size", "8"},
			code:   1,
			errHas: "Error: set version serving settings: serving.batching.maxBatchSize: version 2 cannot batch",
		},
		{
			name:   "help",
			args:   []string{"--help"},
			outHas: "nimbus models config churn --max-batch-size 64 --max-queue-delay 2ms --preferred-batch-sizes 16,32",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := testSig
			if tt.sig != nil {
				sig = *tt.sig
			}
			srv := mgmtServerSig(t, sig)
			file := modelFile(t, "churn.onnx", "onnx-bytes")
			cli(t, srv, "models", "push", file)
			cli(t, srv, "models", "push", file)
			for _, s := range tt.setup {
				cli(t, srv, append([]string{"models", "config", "churn"}, s...)...)
			}

			r := runCLI(t, nil, append([]string{"--server", srv, "models", "config", "churn"}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.err, tt.errHas) || !strings.Contains(r.out, tt.outHas) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", r.code, tt.code, r.out, r.err)
			}
			if tt.want != "" && r.out != tt.want {
				t.Errorf("stdout:\n%s\nwant:\n%s", r.out, tt.want)
			}
			if tt.code != 0 {
				// Nothing changed: the settings are still the setup's.
				if out := cli(t, srv, "models", "config", "churn", "-o", "json"); strings.Contains(out, `"serving": {}`) != (len(tt.setup) == 0) {
					t.Errorf("settings changed by a failed command: %s", out)
				}
			}
			if tt.wantView != nil {
				show := []string{"models", "config", "churn", "-o", "json"}
				if tt.wantView.Version != 0 {
					show = append(show, "--version", "1")
				}
				var got servingView
				if err := json.Unmarshal([]byte(cli(t, srv, show...)), &got); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(*tt.wantView, got); diff != "" {
					t.Errorf("view (-want +got):\n%s", diff)
				}
			}
		})
	}
}
