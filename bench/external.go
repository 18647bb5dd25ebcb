package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/api/oip"
)

// Tools are the optional external programs the suite drives. An empty path means
// not installed; the suite then skips those cells and says so in the report.
type Tools struct {
	Wrk     string // wrk binary (Debian package wrk)
	Ghz     string // ghz binary (go install github.com/bojand/ghz/cmd/ghz@latest)
	Node    string // node binary, set only when the Node peer's npm deps are installed
	NodeDir string // bench/peers/node
	NodeWhy string // why Node is empty
}

// DetectTools looks for wrk and ghz on PATH (ghz also in $GOBIN, $GOPATH/bin and
// ~/go/bin) and for node plus bench/peers/node/node_modules/onnxruntime-node.
func DetectTools(root string) Tools {
	t := Tools{NodeDir: filepath.Join(root, "bench", "peers", "node")}
	t.Wrk, _ = exec.LookPath("wrk")
	t.Ghz, _ = exec.LookPath("ghz")
	if t.Ghz == "" {
		var dirs []string
		for _, env := range []string{"GOBIN", "GOPATH"} {
			if v := os.Getenv(env); v != "" {
				dirs = append(dirs, v, filepath.Join(v, "bin"))
			}
		}
		if home, err := os.UserHomeDir(); err == nil {
			dirs = append(dirs, filepath.Join(home, "go", "bin"))
		}
		for _, d := range dirs {
			if p := filepath.Join(d, "ghz"); isFile(p) {
				t.Ghz = p
				break
			}
		}
	}
	node, err := exec.LookPath("node")
	switch {
	case err != nil:
		t.NodeWhy = "not installed (no node on PATH); node-rest cells skipped"
	case !isDir(filepath.Join(t.NodeDir, "node_modules", "onnxruntime-node")):
		t.NodeWhy = "not installed (run: cd bench/peers/node && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund; bench/run.sh does it); node-rest cells skipped"
	default:
		t.Node = node
	}
	return t
}

// extSample is what an external load generator reported.
type extSample struct {
	requests int
	errors   int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func extCell(model, target string, batching bool, driver string, conc int, s extSample) Cell {
	c := Cell{Model: model, Target: target, Batching: batching, Driver: driver, Conc: conc, Batch: 1,
		Samples: s.requests, Errors: s.errors, Elapsed: s.elapsed, P50: s.p50, P99: s.p99}
	if s.elapsed > 0 {
		c.ReqPerSec = float64(s.requests) / s.elapsed.Seconds()
		c.RowsPerSec = c.ReqPerSec
	}
	return c
}

// wrkScript posts the body file and prints one machine-readable summary line.
const wrkScript = `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = %q
local f = assert(io.open(%q, "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("NIMBUSBENCH %%d %%d %%d %%.0f %%.0f %%d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99), e.status))
end
`

// runWrk runs wrk -t1 -cN for d against url, posting body with token (the
// bare servers ignore it, so every target gets the same bytes).
func runWrk(ctx context.Context, wrk, url, token string, body []byte, conc int, d time.Duration) (extSample, error) {
	dir, err := os.MkdirTemp("", "nimbusbench-wrk-")
	if err != nil {
		return extSample{}, err
	}
	defer os.RemoveAll(dir)
	bodyPath := filepath.Join(dir, "body.json")
	script := filepath.Join(dir, "post.lua")
	if err := os.WriteFile(bodyPath, body, 0o600); err != nil {
		return extSample{}, err
	}
	if err := os.WriteFile(script, fmt.Appendf(nil, wrkScript, "Bearer "+token, bodyPath), 0o600); err != nil {
		return extSample{}, err
	}
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	out, err := exec.CommandContext(ctx, wrk, "-t1", "-c"+strconv.Itoa(conc), "-d"+strconv.Itoa(secs)+"s",
		"--timeout", "10s", "-s", script, url).CombinedOutput()
	if err != nil {
		return extSample{}, fmt.Errorf("%v: %s", err, lastLines(out))
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) != 7 || f[0] != "NIMBUSBENCH" {
			continue
		}
		var v [6]float64
		for i := range v {
			if v[i], err = strconv.ParseFloat(f[i+1], 64); err != nil {
				return extSample{}, fmt.Errorf("wrk summary %q: %w", line, err)
			}
		}
		s := extSample{requests: int(v[0]), elapsed: time.Duration(v[1]) * time.Microsecond, errors: int(v[2] + v[5]),
			p50: time.Duration(v[3]) * time.Microsecond, p99: time.Duration(v[4]) * time.Microsecond}
		if s.errors > 0 {
			return s, fmt.Errorf("%d errors (non-2xx or socket): %s", s.errors, lastLines(out))
		}
		return s, nil
	}
	return extSample{}, fmt.Errorf("no summary line in wrk's output: %s", lastLines(out))
}

// runGhz runs ghz --cpus 1 -cN for d against addr with req as JSON and token
// in the call metadata.
func runGhz(ctx context.Context, ghz, root, addr, token string, req *pb.ModelInferRequest, conc int, d time.Duration) (extSample, error) {
	data, err := protojson.Marshal(req)
	if err != nil {
		return extSample{}, err
	}
	proto := filepath.Join(root, "api", "inferencepb", "grpc_predict_v2.proto")
	out, err := exec.CommandContext(ctx, ghz, "--insecure", "--cpus", "1",
		"--proto", proto, "--import-paths", filepath.Dir(proto),
		"--call", "inference.GRPCInferenceService/ModelInfer", "-d", string(data),
		"--metadata", `{"authorization":"Bearer `+token+`"}`,
		"-c", strconv.Itoa(conc), "-z", d.String(),
		"-O", "json", addr).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return extSample{}, fmt.Errorf("%v: %s", err, lastLines(ee.Stderr))
		}
		return extSample{}, err
	}
	var rep struct {
		Count   int     `json:"count"`
		Total   int64   `json:"total"`
		Average int64   `json:"average"`
		Rps     float64 `json:"rps"`
		Dist    []struct {
			Percentage int   `json:"percentage"`
			Latency    int64 `json:"latency"`
		} `json:"latencyDistribution"`
		Status map[string]int `json:"statusCodeDistribution"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return extSample{}, fmt.Errorf("ghz output: %w: %s", err, lastLines(out))
	}
	s := extSample{requests: rep.Count, elapsed: time.Duration(rep.Total)}
	for code, n := range rep.Status {
		if code != "OK" {
			s.errors += n
		}
	}
	for _, p := range rep.Dist {
		switch p.Percentage {
		case 50:
			s.p50 = time.Duration(p.Latency)
		case 99:
			s.p99 = time.Duration(p.Latency)
		}
	}
	// ghz cancels the calls in flight when -z runs out and counts them as
	// Unavailable or Canceled: up to conc such errors are the stop, not the server.
	if s.errors > conc {
		return s, fmt.Errorf("%d calls failed: %v", s.errors, rep.Status)
	}
	return s, nil
}

func lastLines(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 400 {
		s = "…" + s[len(s)-400:]
	}
	return s
}

// nodePeer is bench/peers/node/server.js serving the suite's models.
type nodePeer struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done closes
}

func startNode(ctx context.Context, t Tools, models map[string]string) (*nodePeer, error) {
	args := []string{filepath.Join(t.NodeDir, "server.js"), "--port", "0"}
	for name, path := range models {
		args = append(args, name+"="+path)
	}
	cmd := exec.Command(t.Node, args...)
	cmd.Dir = t.NodeDir
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &nodePeer{cmd: cmd, done: make(chan struct{})}
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				port <- v
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case v := <-port:
		p.url = "http://127.0.0.1:" + v
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("node exited: %v", p.err)
	case <-time.After(30 * time.Second):
		p.close()
		return nil, errors.New("node did not print its port within 30 s")
	case <-ctx.Done():
		p.close()
		return nil, ctx.Err()
	}
}

// check asks the peer once and compares the answer's first output shape with Nimbus's.
func (p *nodePeer) check(ctx context.Context, e *env, w *workload) error {
	reply, err := e.restCall(ctx, p.url+w.restPath, w.restBody, nil)
	if err != nil {
		return err
	}
	resp, err := oip.DecodeInferResponse(reply, 0)
	if err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if len(resp.Outputs) == 0 || len(resp.Outputs[0].Shape) == 0 || resp.Outputs[0].Shape[0] != int64(w.batch) {
		return fmt.Errorf("unexpected answer: %s", reply[:min(len(reply), 200)])
	}
	return nil
}

func (p *nodePeer) close() { terminate(p.cmd.Process, p.done, 5*time.Second) }
