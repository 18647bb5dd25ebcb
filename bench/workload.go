package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	goruntime "runtime"
	"slices"
	"strconv"
	"time"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/api/oip"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// workload is one model at one batch size, in every form the paths send it.
type workload struct {
	model    string
	path     string // the .onnx file
	batch    int
	raw      runtime.Model
	inputs   []*tensor.Tensor
	restPath string // /v2/models/NAME/infer
	restBody []byte // OIP JSON, every value inline
	grpcReq  *pb.ModelInferRequest
	restSize int // bytes of Nimbus's REST answer (the bare server answers as many)
}

// workload builds the request for a single-FP32-input model with a dynamic batch
// dimension, asks Nimbus once over REST and gRPC, checks the answers, and loads
// them into the bare servers.
func (e *env) workload(ctx context.Context, name, path string, raw runtime.Model, batch int) (*workload, error) {
	x, body, err := fp32Request(raw.Signature(), batch)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	w := &workload{model: name, path: path, batch: batch, raw: raw, inputs: []*tensor.Tensor{x}, restPath: "/v2/models/" + name + "/infer"}
	w.restBody = body
	w.grpcReq = &pb.ModelInferRequest{
		ModelName:        name,
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: x.Name, Datatype: "FP32", Shape: x.Shape}},
		RawInputContents: [][]byte{x.Data},
	}

	// One real answer of each kind: it checks the server and sizes the bare replies.
	reply, err := e.restCall(ctx, e.url+w.restPath, body, nil)
	if err != nil {
		return nil, fmt.Errorf("first REST call: %w", err)
	}
	resp, err := oip.DecodeInferResponse(reply, 0)
	if err != nil {
		return nil, fmt.Errorf("decode REST answer: %w", err)
	}
	if len(resp.Outputs) == 0 || len(resp.Outputs[0].Shape) == 0 || resp.Outputs[0].Shape[0] != int64(batch) {
		return nil, fmt.Errorf("REST answer has unexpected outputs: %s", reply[:min(len(reply), 200)])
	}
	gresp, err := e.grpc.ModelInfer(ctx, w.grpcReq)
	if err != nil {
		return nil, fmt.Errorf("first gRPC call: %w", err)
	}
	if len(gresp.RawOutputContents) == 0 {
		return nil, fmt.Errorf("gRPC answer has no raw_output_contents")
	}
	w.restSize = len(reply)
	if err := e.bare.setReplies(ctx, reply, gresp); err != nil {
		return nil, err
	}
	return w, nil
}

// fp32Request builds the benchmarks' request for a model with one FP32 [batch,
// features] input (the only kind they drive): batch rows of 2·sin(0.37·i), as a
// tensor and as OIP JSON with every value inline.
func fp32Request(sig tensor.Signature, batch int) (*tensor.Tensor, []byte, error) {
	if len(sig.Inputs) != 1 || sig.Inputs[0].DataType != tensor.FP32 || len(sig.Inputs[0].Shape) != 2 || sig.Inputs[0].Shape[1] <= 0 {
		return nil, nil, fmt.Errorf("the benchmarks drive models with one FP32 [batch, features] input; got %v", sig.Inputs)
	}
	in := sig.Inputs[0]
	feats := int(in.Shape[1])
	data := make([]byte, 4*batch*feats)
	for i := range batch * feats {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(2*math.Sin(float64(i)*0.37))))
	}
	x := &tensor.Tensor{Name: in.Name, DataType: tensor.FP32, Shape: []int64{int64(batch), int64(feats)}, Data: data}
	body, _, err := oip.EncodeInferRequest(nil, &serving.InferRequest{Inputs: []*tensor.Tensor{x}}, false)
	if err != nil {
		return nil, nil, fmt.Errorf("encode request: %w", err)
	}
	return x, body, nil
}

// runGroup measures every path for one workload at one concurrency and fills in
// the derived columns.
func (e *env) runGroup(ctx context.Context, cfg Config, w *workload, conc int) ([]Result, error) {
	bufs := make([]*bytes.Buffer, conc)
	writers := make([]*discardWriter, conc)
	for i := range conc {
		bufs[i] = bytes.NewBuffer(make([]byte, 0, w.restSize+512))
		writers[i] = &discardWriter{h: http.Header{}}
	}
	bareConn, err := dial(e.bare.grpcAddr)
	if err != nil {
		return nil, err
	}
	defer bareConn.Close()
	bareGRPC := pb.NewGRPCInferenceServiceClient(bareConn)

	direct, closeDirect, err := newORTDirect(w.path, w.raw.Signature(), w.inputs[0], conc)
	if err != nil {
		return nil, err
	}
	defer closeDirect()

	ops := map[string]op{
		PathORT: direct,
		// The physical limit: the runtime adapter's fast path (no cancellable context).
		PathRaw: func(context.Context, int) error {
			_, err := w.raw.Run(context.Background(), w.inputs, nil)
			return err
		},
		// ctx is cancellable, as a server request's is.
		PathManager: func(ctx context.Context, _ int) error {
			_, err := e.sys.Manager.Infer(ctx, &serving.InferRequest{Model: w.model, Inputs: w.inputs})
			return err
		},
		PathRESTHandler: func(ctx context.Context, worker int) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://nimbus"+w.restPath, bytes.NewReader(w.restBody))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+e.token)
			dw := writers[worker]
			dw.reset()
			e.rest.ServeHTTP(dw, req)
			if dw.status != http.StatusOK {
				return fmt.Errorf("rest handler answered %d", dw.status)
			}
			return nil
		},
		PathRESTLoopback: func(ctx context.Context, worker int) error {
			_, err := e.restCall(ctx, e.url+w.restPath, w.restBody, bufs[worker])
			return err
		},
		PathBareHTTP: func(ctx context.Context, worker int) error {
			_, err := e.restCall(ctx, e.bare.httpURL+w.restPath, w.restBody, bufs[worker])
			return err
		},
		PathGRPCLoopback: func(ctx context.Context, _ int) error {
			_, err := e.grpc.ModelInfer(ctx, w.grpcReq)
			return err
		},
		PathBareGRPC: func(ctx context.Context, _ int) error {
			_, err := bareGRPC.ModelInfer(ctx, w.grpcReq)
			return err
		},
	}

	var out []Result
	for _, path := range Paths {
		if cfg.Paths != nil && !slices.Contains(cfg.Paths, path) {
			continue
		}
		goruntime.GC() // don't bill one cell for the previous cell's garbage
		s, err := measure(ctx, conc, cfg.Load, ops[path])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r := Result{
			Model: w.model, Batch: w.batch, Conc: conc, Path: path, Samples: len(s.lat), Elapsed: s.elapsed,
			P50: percentile(s.lat, 50), P99: percentile(s.lat, 99),
		}
		if s.elapsed > 0 {
			r.ReqPerSec = float64(len(s.lat)) / s.elapsed.Seconds()
			r.RowsPerSec = r.ReqPerSec * float64(w.batch)
		}
		out = append(out, r)
		if cfg.Progress != nil {
			cfg.Progress(r)
		}
	}
	derive(out)
	return out, nil
}

// derive fills added latency and the raw ratio of one group.
func derive(group []Result) {
	find := func(path string) *Result {
		for i := range group {
			if group[i].Path == path {
				return &group[i]
			}
		}
		return nil
	}
	raw, direct := find(PathRaw), find(PathORT)
	bare := map[string]*Result{PathRESTLoopback: find(PathBareHTTP), PathGRPCLoopback: find(PathBareGRPC)}
	for i := range group {
		r := &group[i]
		ref := raw
		switch r.Path {
		case PathORT, PathBareHTTP, PathBareGRPC:
			continue
		case PathRaw:
			ref = direct
		}
		if ref == nil {
			continue
		}
		r.HasAdded = true
		r.AddedP50, r.AddedP99 = r.P50-ref.P50, r.P99-ref.P99
		if b := bare[r.Path]; b != nil {
			r.AddedP50 -= b.P50
			r.AddedP99 -= b.P99
		}
		if ref.RowsPerSec > 0 {
			r.RawRatio = r.RowsPerSec / ref.RowsPerSec
		}
	}
}

// restCall posts body and returns the answer (read into buf when given). Any
// status but 200 is an error.
func (e *env) restCall(ctx context.Context, url string, body []byte, buf *bytes.Buffer) ([]byte, error) {
	r, err := postJSON(ctx, e.hc, url, body, buf)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d: %s", url, r.status, r.body[:min(len(r.body), 300)])
	}
	return r.body, nil
}

// inferReply is one inference answer as the benchmarks see it.
type inferReply struct {
	status int
	body   []byte        // in the caller's buffer when it gave one
	cold   bool          // the Nimbus-Cold-Start header was present
	wait   time.Duration // its value
}

// postJSON posts an OIP JSON body to url with hc and reads the answer into buf
// (a new buffer when nil). A transport error is an error; an HTTP error status
// is not (the caller decides).
func postJSON(ctx context.Context, hc *http.Client, url string, body []byte, buf *bytes.Buffer) (inferReply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return inferReply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return inferReply{}, err
	}
	defer resp.Body.Close()
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return inferReply{}, err
	}
	r := inferReply{status: resp.StatusCode, body: buf.Bytes()}
	if v := resp.Header.Get(HeaderColdStart); v != "" {
		r.cold = true
		if ms, err := strconv.ParseFloat(v, 64); err == nil {
			r.wait = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return r, nil
}

// discardWriter is an http.ResponseWriter that keeps the status and drops the
// body; one per worker, reset before each call.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (d *discardWriter) reset() {
	clear(d.h)
	d.status, d.n = 0, 0
}

func (d *discardWriter) Header() http.Header { return d.h }

func (d *discardWriter) WriteHeader(code int) {
	if d.status == 0 {
		d.status = code
	}
}

func (d *discardWriter) Write(p []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	d.n += len(p)
	return len(p), nil
}

var _ http.ResponseWriter = (*discardWriter)(nil)
