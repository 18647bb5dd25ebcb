package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"time"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// The suite (issue 3) drives single-row requests at several concurrency levels
// against Nimbus with batching off and on, the bare servers, and the Node peer,
// with our own closed- and open-loop generators and, where installed, wrk and ghz.
// Every cell of one model runs in the same process and minutes, so ratios compare
// like with like.

// Targets: what a suite cell calls.
const (
	TargetRaw        = "raw-run"     // runtime/onnx Model.Run in-process at the cell's batch size
	TargetManager    = "manager"     // serving.Manager.Infer in-process (no network)
	TargetBareHTTP   = "bare-http"   // bare net/http server answering Nimbus's bytes
	TargetNimbusREST = "nimbus-rest" // Nimbus OIP REST, JSON, HTTP/1.1 keep-alive
	TargetNode       = "node-rest"   // onnxruntime-node behind Node's http server, OIP JSON
	TargetBareGRPC   = "bare-grpc"   // bare grpc-go server answering Nimbus's ModelInferResponse
	TargetNimbusGRPC = "nimbus-grpc" // Nimbus OIP gRPC, raw_input_contents
)

// Drivers: what generates the load.
const (
	DriverClosed = "closed" // our Go client, closed loop: N workers, each sends when its last call returns
	DriverOpen   = "open"   // our Go client, open loop: fixed arrival rate, latency from the intended send time
	DriverWrk    = "wrk"    // wrk -t1 -cN (closed loop, HTTP/1.1 keep-alive), external process
	DriverGhz    = "ghz"    // ghz --cpus 1 -cN (closed loop, one HTTP/2 connection), external process
)

// SuiteDrivers lists every driver in run order.
var SuiteDrivers = []string{DriverClosed, DriverOpen, DriverWrk, DriverGhz}

// batchedSuffix names the second copy of each model, the one with batching on.
const batchedSuffix = "_batched"

// SuiteConfig is one run of the suite.
type SuiteConfig struct {
	Models      []string // test models under testdata/models
	Concurrency []int
	// Load is each closed-loop and in-process cell's warm-up and measured phase.
	Load Load
	// OpenLoad is each open-loop cell's measured phase (Warmup is not used: the
	// closed-loop cell of the same target just ran). Iterations counts calls per
	// worker, as in Load.
	OpenLoad Load
	// OpenFraction sets the open-loop arrival rate: every target of one model and
	// concurrency is offered the same rate, this fraction of the req/s the
	// closed loop reached on the slowest of them at that concurrency, so their
	// latencies compare at one load that each of them can carry.
	OpenFraction float64
	// ExternalDuration is how long wrk and ghz run per cell.
	ExternalDuration time.Duration
	// Batching is the batched copies' setting; Instances is both copies' instance count.
	Batching  registry.BatchingConfig
	Instances int
	// Drivers restricts the drivers (nil: all that are installed).
	Drivers []string
	Tools   Tools
	// RawBatches are batch sizes raw-run is always measured at (besides 1 and the
	// sizes the batcher reached).
	RawBatches []int

	RepoRoot string
	Log      *slog.Logger
	Progress func(Cell)
	// Pin separates the cores of Nimbus and its load generator (pinned.go);
	// the in-process manager cells are left out then.
	Pin *Pinning
}

// Cell is one measured (model, target, batching, driver, concurrency).
type Cell struct {
	Model    string
	Target   string
	Batching bool
	Driver   string
	Conc     int
	Batch    int     // rows per call (1 except raw-run)
	Offered  float64 // open loop: offered req/s
	Samples  int
	Errors   int
	Elapsed  time.Duration
	P50, P99 time.Duration
	// ReqPerSec is calls per second; RowsPerSec is ReqPerSec × Batch.
	ReqPerSec  float64
	RowsPerSec float64
	// MeanBatch is the mean rows per runtime call the batcher formed during the
	// cell's measured phase, from nimbus_batch_size (0: not a Nimbus target, or
	// the histogram did not move).
	MeanBatch float64
}

func (c Cell) key() string {
	return fmt.Sprintf("%s|%s|%v|%s|%d|%d", c.Model, c.Target, c.Batching, c.Driver, c.Conc, c.Batch)
}

// SuiteResult is every cell plus what the run found about its environment.
type SuiteResult struct {
	Cells []Cell
	// Notes are one-line remarks (tools not installed, peers that failed).
	Notes []string
}

// RunSuite starts Nimbus, the bare servers and the peers and measures every cell.
func RunSuite(ctx context.Context, cfg SuiteConfig) (*SuiteResult, error) {
	if cfg.RepoRoot == "" {
		root, err := FindRepoRoot()
		if err != nil {
			return nil, err
		}
		cfg.RepoRoot = root
	}
	if len(cfg.Concurrency) == 0 {
		cfg.Concurrency = []int{1}
	}
	if cfg.OpenFraction <= 0 {
		cfg.OpenFraction = 0.5
	}
	if cfg.ExternalDuration <= 0 {
		cfg.ExternalDuration = 2 * time.Second
	}
	if cfg.Instances <= 0 {
		cfg.Instances = 1
	}
	base := Config{Concurrency: cfg.Concurrency, RepoRoot: cfg.RepoRoot, Log: logger(cfg.Log), Pin: cfg.Pin}
	e, err := start(ctx, base)
	if err != nil {
		return nil, err
	}
	defer e.close()

	res := &SuiteResult{}
	use := func(d string) bool { return cfg.Drivers == nil || slices.Contains(cfg.Drivers, d) }
	wrkOK := use(DriverWrk) && cfg.Tools.Wrk != ""
	ghzOK := use(DriverGhz) && cfg.Tools.Ghz != ""
	if use(DriverWrk) && !wrkOK {
		res.Notes = append(res.Notes, "wrk: not installed (apt-get install wrk); wrk cells skipped")
	}
	if use(DriverGhz) && !ghzOK {
		res.Notes = append(res.Notes, "ghz: not installed (go install github.com/bojand/ghz/cmd/ghz@latest); ghz cells skipped")
	}

	paths := map[string]string{}
	for _, m := range cfg.Models {
		paths[m] = filepath.Join(cfg.RepoRoot, "testdata", "models", m+".onnx")
	}
	var node *nodePeer
	if cfg.Tools.Node == "" {
		res.Notes = append(res.Notes, "node peer: "+cfg.Tools.NodeWhy)
	} else {
		node, err = startNode(ctx, cfg.Tools, paths)
		if err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("node peer: failed to start (%v); its cells skipped", err))
			node = nil
		} else {
			defer node.close()
		}
	}

	mc := client.New(e.url, client.WithToken(e.token))
	for _, m := range cfg.Models {
		if err := suiteModel(ctx, e, mc, cfg, res, m, paths[m], node, wrkOK, ghzOK, use); err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
	}
	return res, nil
}

// suiteModel measures one model: raw, then per concurrency every target with the
// closed loop, the open loop, wrk and ghz, then raw at the batch sizes reached.
func suiteModel(ctx context.Context, e *env, mc *client.Client, cfg SuiteConfig, res *SuiteResult, name, path string,
	node *nodePeer, wrkOK, ghzOK bool, use func(string) bool) error {
	raw, err := onnx.New(e.libPath, logger(cfg.Log)).Load(ctx, path, runtime.Options{})
	if err != nil {
		return fmt.Errorf("load for raw runs: %w", err)
	}
	defer raw.Close()
	batched := name + batchedSuffix
	// A fixed count (min = max): the suite measures serving, not the autoscaler.
	inst := &registry.InstancesConfig{Min: cfg.Instances, Max: cfg.Instances}
	for _, m := range []string{name, batched} {
		if _, err := mc.PushFile(ctx, registry.DefaultNamespace, m, path, registry.CreateVersionRequest{}, nil); err != nil {
			return fmt.Errorf("push %s: %w", m, err)
		}
		sc := registry.ServingConfig{Instances: inst}
		if m == batched {
			b := cfg.Batching
			sc.Batching = &b
		}
		if _, err := mc.SetServing(ctx, registry.DefaultNamespace, m, sc); err != nil {
			return fmt.Errorf("set serving of %s: %w", m, err)
		}
	}
	// The workload's first calls check both protocols and load Nimbus's answer
	// into the bare servers; the batched copy sends the same bytes.
	w, err := e.workload(ctx, name, path, raw, 1)
	if err != nil {
		return err
	}
	wb := *w
	wb.model = batched
	wb.restPath = "/v2/models/" + batched + "/infer"
	wb.grpcReq = &pb.ModelInferRequest{ModelName: batched, Inputs: w.grpcReq.Inputs, RawInputContents: w.grpcReq.RawInputContents}
	if _, err := e.restCall(ctx, e.url+wb.restPath, wb.restBody, nil); err != nil {
		return fmt.Errorf("first call to %s: %w", batched, err)
	}
	if node != nil {
		if err := node.check(ctx, e, w); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("node peer: %s: %v; its cells skipped", name, err))
			node = nil
		}
	}

	add := func(c Cell) {
		res.Cells = append(res.Cells, c)
		if cfg.Progress != nil {
			cfg.Progress(c)
		}
	}
	measuredRaw := map[int]bool{}
	rawAt := func(batch int) error {
		if measuredRaw[batch] {
			return nil
		}
		measuredRaw[batch] = true
		inputs := []*tensor.Tensor{rowsOf(w.inputs[0], batch)}
		goruntime.GC()
		s, err := measure(ctx, 1, cfg.Load, func(context.Context, int) error {
			_, err := raw.Run(context.Background(), inputs, nil)
			return err
		})
		if err != nil {
			return fmt.Errorf("raw-run batch %d: %w", batch, err)
		}
		add(cellOf(name, TargetRaw, false, DriverClosed, 1, batch, s))
		return nil
	}
	for _, b := range append([]int{1}, cfg.RawBatches...) {
		if err := rawAt(b); err != nil {
			return err
		}
	}

	type target struct {
		name     string
		batching bool
		op       op
		model    string // Nimbus model whose batch sizes to read ("" for none)
	}
	bareConn, err := dial(e.bare.grpcAddr)
	if err != nil {
		return err
	}
	defer bareConn.Close()
	bareGRPC := pb.NewGRPCInferenceServiceClient(bareConn)
	maxConc := slices.Max(cfg.Concurrency)
	bufs := newBufs(maxConc, w.restSize)
	restOp := func(url string, body []byte) op {
		return func(ctx context.Context, worker int) error {
			_, err := e.restCall(ctx, url, body, bufs[worker])
			return err
		}
	}
	grpcOp := func(c pb.GRPCInferenceServiceClient, req *pb.ModelInferRequest) op {
		return func(ctx context.Context, _ int) error {
			_, err := c.ModelInfer(ctx, req)
			return err
		}
	}
	managerOp := func(model string) op {
		return func(ctx context.Context, _ int) error {
			_, err := e.sys.Manager.Infer(ctx, &serving.InferRequest{Model: model, Inputs: w.inputs})
			return err
		}
	}
	targets := []target{
		{TargetBareHTTP, false, restOp(e.bare.httpURL+w.restPath, w.restBody), ""},
		{TargetNimbusREST, false, restOp(e.url+w.restPath, w.restBody), name},
		{TargetNimbusREST, true, restOp(e.url+wb.restPath, w.restBody), batched},
	}
	if node != nil {
		targets = append(targets, target{TargetNode, false, restOp(node.url+w.restPath, w.restBody), ""})
	}
	targets = append(targets,
		target{TargetBareGRPC, false, grpcOp(bareGRPC, w.grpcReq), ""},
		target{TargetNimbusGRPC, false, grpcOp(e.grpc, w.grpcReq), name},
		target{TargetNimbusGRPC, true, grpcOp(e.grpc, wb.grpcReq), batched},
	)
	var inproc []target
	if e.sys != nil { // not when Nimbus is a child process
		inproc = []target{
			{TargetManager, false, managerOp(name), name},
			{TargetManager, true, managerOp(batched), batched},
		}
	}

	for _, conc := range cfg.Concurrency {
		closed := map[string]Cell{}
		if use(DriverClosed) || use(DriverOpen) {
			for _, t := range append(slices.Clone(targets), inproc...) {
				var before batchStats
				goruntime.GC()
				// The batch sizes are read around the measured phase only.
				s, err := measureMarked(ctx, conc, cfg.Load, t.op, func() { before = e.batchStats(ctx, t.model) })
				if err != nil {
					return fmt.Errorf("%s (batching %v) closed c=%d: %w", t.name, t.batching, conc, err)
				}
				c := cellOf(name, t.name, t.batching, DriverClosed, conc, 1, s)
				c.MeanBatch = e.batchStats(ctx, t.model).meanSince(before)
				closed[t.name+fmt.Sprint(t.batching)] = c
				if use(DriverClosed) || t.name == TargetManager {
					add(c)
				}
			}
		}
		if use(DriverOpen) {
			// One offered rate for every target (closed loop ran them all above):
			// a fraction of the slowest one's closed-loop req/s.
			slowest := math.Inf(1)
			for _, t := range targets {
				slowest = min(slowest, closed[t.name+fmt.Sprint(t.batching)].ReqPerSec)
			}
			rate := cfg.OpenFraction * slowest
			for _, t := range targets {
				before := e.batchStats(ctx, t.model)
				goruntime.GC()
				s, err := measureOpen(ctx, conc, rate, cfg.OpenLoad, t.op)
				if err != nil {
					return fmt.Errorf("%s (batching %v) open c=%d: %w", t.name, t.batching, conc, err)
				}
				c := cellOf(name, t.name, t.batching, DriverOpen, conc, 1, s)
				c.Offered = rate
				c.MeanBatch = e.batchStats(ctx, t.model).meanSince(before)
				add(c)
			}
		}
		if wrkOK {
			for _, t := range targets {
				var url string
				switch t.name {
				case TargetBareHTTP:
					url = e.bare.httpURL + w.restPath
				case TargetNimbusREST:
					url = e.url + w.restPath
					if t.batching {
						url = e.url + wb.restPath
					}
				case TargetNode:
					url = node.url + w.restPath
				default:
					continue
				}
				before := e.batchStats(ctx, t.model)
				s, err := runWrk(ctx, cfg.Tools.Wrk, url, e.token, w.restBody, conc, cfg.ExternalDuration)
				if err != nil {
					res.Notes = append(res.Notes, fmt.Sprintf("wrk %s c=%d: %v", t.name, conc, err))
					continue
				}
				c := extCell(name, t.name, t.batching, DriverWrk, conc, s)
				c.MeanBatch = e.batchStats(ctx, t.model).meanSince(before)
				add(c)
			}
		}
		if ghzOK {
			for _, t := range targets {
				addr, req := e.grpcAddr, w.grpcReq
				switch {
				case t.name == TargetBareGRPC:
					addr = e.bare.grpcAddr
				case t.name == TargetNimbusGRPC && t.batching:
					req = wb.grpcReq
				case t.name != TargetNimbusGRPC:
					continue
				}
				before := e.batchStats(ctx, t.model)
				s, err := runGhz(ctx, cfg.Tools.Ghz, cfg.RepoRoot, addr, e.token, req, conc, cfg.ExternalDuration)
				if err != nil {
					res.Notes = append(res.Notes, fmt.Sprintf("ghz %s c=%d: %v", t.name, conc, err))
					continue
				}
				c := extCell(name, t.name, t.batching, DriverGhz, conc, s)
				c.MeanBatch = e.batchStats(ctx, t.model).meanSince(before)
				add(c)
			}
		}
	}
	// Raw at every batch size the batcher reached, for the saturation target.
	for _, c := range res.Cells {
		if c.Model == name && c.MeanBatch >= 1.5 {
			if err := rawAt(int(math.Round(c.MeanBatch))); err != nil {
				return err
			}
		}
	}
	return nil
}

func cellOf(model, target string, batching bool, driver string, conc, batch int, s sample) Cell {
	c := Cell{Model: model, Target: target, Batching: batching, Driver: driver, Conc: conc, Batch: batch,
		Samples: len(s.lat), Elapsed: s.elapsed, P50: percentile(s.lat, 50), P99: percentile(s.lat, 99)}
	if s.elapsed > 0 {
		c.ReqPerSec = float64(len(s.lat)) / s.elapsed.Seconds()
		c.RowsPerSec = c.ReqPerSec * float64(batch)
	}
	return c
}

// rowsOf repeats x's rows (cycling) to make a [batch, ...] tensor.
func rowsOf(x *tensor.Tensor, batch int) *tensor.Tensor {
	rowBytes := len(x.Data) / int(x.Shape[0])
	data := make([]byte, batch*rowBytes)
	for i := range batch {
		copy(data[i*rowBytes:], x.Data[(i%int(x.Shape[0]))*rowBytes:][:rowBytes])
	}
	// Vary the values a little per row so no two rows are identical.
	for i := 0; i+4 <= len(data); i += 4 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(data[i:]))
		binary.LittleEndian.PutUint32(data[i:], math.Float32bits(v+float32(i/rowBytes)*1e-3))
	}
	shape := slices.Clone(x.Shape)
	shape[0] = int64(batch)
	return &tensor.Tensor{Name: x.Name, DataType: x.DataType, Shape: shape, Data: data}
}

func newBufs(n, size int) []*bytes.Buffer {
	out := make([]*bytes.Buffer, n)
	for i := range out {
		out[i] = bytes.NewBuffer(make([]byte, 0, size+512))
	}
	return out
}

// batchSizeMetric is Nimbus's rows-per-runtime-call histogram (telemetry),
// labelled namespace, model and version.
const batchSizeMetric = "nimbus_batch_size"

// batchStats is the sum and count of nimbus_batch_size for one model; ok is
// false when they could not be read.
type batchStats struct {
	sum, count float64
	ok         bool
}

// batchStats scrapes /metrics for model's nimbus_batch_size (not ok for model
// "", which is not a Nimbus target, or a failed scrape).
func (e *env) batchStats(ctx context.Context, model string) batchStats {
	if model == "" {
		return batchStats{}
	}
	t, err := scrapeMetrics(ctx, e.hc, e.url)
	if err != nil {
		return batchStats{}
	}
	return batchStatsOf(t, model)
}

// batchStatsOf sums nimbus_batch_size_sum and _count over model's series. A
// model without series yet (nothing served) has zero of each.
func batchStatsOf(t promText, model string) batchStats {
	label := `model="` + model + `"`
	sum, _ := t.sum(batchSizeMetric+"_sum", label)
	count, _ := t.sum(batchSizeMetric+"_count", label)
	return batchStats{sum: sum, count: count, ok: true}
}

// meanSince is the mean batch size between two scrapes (0 when either failed
// or no call ran).
func (after batchStats) meanSince(before batchStats) float64 {
	n := after.count - before.count
	if !after.ok || !before.ok || n <= 0 {
		return 0
	}
	return (after.sum - before.sum) / n
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
