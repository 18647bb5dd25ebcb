package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/residency"
)

// ServerOptions start a Nimbus server as a child process (ServerProcess).
type ServerOptions struct {
	Binary  string // bin/nimbus
	DataDir string
	ORTLib  string
	// MemoryBudget is passed as --memory-budget ("0": unlimited); "" leaves the
	// server's default.
	MemoryBudget string
	// Log, when non-nil, receives the server's log lines (JSON).
	Log io.Writer
	// GRPC turns the gRPC listener on (a loopback port the kernel picks).
	GRPC bool
	// Prefix runs the server under a command, e.g. taskset -c 0.
	Prefix []string
}

// ServerProcess is `nimbus server` running as a child of the benchmark, on a
// random loopback port with gRPC off, so that its resident set is its own. It
// dies with the benchmark (SIGKILL on parent death).
type ServerProcess struct {
	URL string
	// GRPCAddr is the gRPC listener's address ("" unless ServerOptions.GRPC).
	GRPCAddr string
	// Token is the bootstrap admin token the server wrote to its data dir.
	Token string
	PID   int
	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited and its log is drained
	err   error         // Wait's result, set before done closes
	tail  *lineTail
}

// errServerExited means the server process ended while the benchmark needed it.
var errServerExited = errors.New("nimbus server exited")

// StartServer runs opts.Binary server on 127.0.0.1 with a port the kernel
// picks, reads the address it logs, and waits until it reports ready.
func StartServer(ctx context.Context, opts ServerOptions) (*ServerProcess, error) {
	grpcAddr := ""
	if opts.GRPC {
		grpcAddr = "127.0.0.1:0"
	}
	args := []string{"server", "--data-dir", opts.DataDir, "--http-addr", "127.0.0.1:0", "--grpc-addr", grpcAddr,
		"--log-format", "json", "--log-level", "info", "--cli-config", "none"}
	if opts.ORTLib != "" {
		args = append(args, "--ort-lib", opts.ORTLib)
	}
	if opts.MemoryBudget != "" {
		args = append(args, "--memory-budget", opts.MemoryBudget)
	}
	argv := append(slices.Clone(opts.Prefix), opts.Binary)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), "NIMBUS_CONFIG=") // no stray config file
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &ServerProcess{cmd: cmd, done: make(chan struct{}), tail: &lineTail{max: 40}}
	logDone := make(chan struct{})
	started := make(chan error, 1)
	// Pdeathsig fires when the OS thread that started the child exits, not the
	// process: start and wait on one locked thread, which ends only after the
	// child has.
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread exits with this goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			close(logDone)
			close(p.done)
			return
		}
		started <- nil
		<-logDone // Wait closes the pipe: read everything first
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", opts.Binary, err)
	}
	p.PID = cmd.Process.Pid
	addr := make(chan [2]string, 1)
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Bytes()
			p.tail.add(string(line))
			if opts.Log != nil {
				fmt.Fprintf(opts.Log, "%s\n", line)
			}
			if found { // the server logs every load: parse only until the address
				continue
			}
			var rec struct {
				Msg  string `json:"msg"`
				HTTP string `json:"http"`
				GRPC string `json:"grpc"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "nimbus serving" && rec.HTTP != "" {
				found = true
				addr <- [2]string{rec.HTTP, rec.GRPC}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		p.URL, p.GRPCAddr = a[0], a[1] // the server logs its URL
	case <-p.done:
		return nil, fmt.Errorf("%w before listening (%v):\n%s", errServerExited, p.err, p.tail)
	case <-time.After(30 * time.Second):
		p.Stop()
		return nil, fmt.Errorf("nimbus server did not log its address within 30 s:\n%s", p.tail)
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	if err := waitReady(ctx, hc, p.URL+"/v2/health/ready"); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%w:\n%s", err, p.tail)
	}
	if p.Token, err = readToken(opts.DataDir); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// exited reports whether the process has ended.
func (p *ServerProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Logs is the last lines the server logged, for error messages.
func (p *ServerProcess) Logs() string { return p.tail.String() }

// Stop sends SIGTERM (the server drains and exits), then SIGKILL after 60 s. It
// returns an error if the server had already died or did not exit cleanly.
func (p *ServerProcess) Stop() error {
	if p.exited() {
		return fmt.Errorf("%w early (%v):\n%s", errServerExited, p.err, p.tail)
	}
	if terminate(p.cmd.Process, p.done, 60*time.Second) {
		return fmt.Errorf("nimbus server ignored SIGTERM for 60 s; killed:\n%s", p.tail)
	}
	if p.err != nil {
		return fmt.Errorf("nimbus server: %w:\n%s", p.err, p.tail)
	}
	return nil
}

// terminate sends proc SIGTERM and waits for exited to close; if it has not
// after grace, it sends SIGKILL and waits again. It reports whether it killed.
func terminate(proc *os.Process, exited <-chan struct{}, grace time.Duration) (killed bool) {
	proc.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return false
	case <-t.C:
		proc.Kill()
		<-exited
		return true
	}
}

// ProcMem is a process's memory as /proc/PID/status reports it.
type ProcMem struct {
	RSS int64 // VmRSS: resident now
	HWM int64 // VmHWM: peak resident since the process started
}

// Mem reads the server's VmRSS and VmHWM.
func (p *ServerProcess) Mem() (ProcMem, error) { return ReadProcMem(strconv.Itoa(p.PID)) }

// ReadProcMem reads VmRSS and VmHWM from /proc/PID/status ("self" for this process).
func ReadProcMem(pid string) (ProcMem, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return ProcMem{}, fmt.Errorf("read process memory: %w", err)
	}
	return parseProcStatus(string(b))
}

func parseProcStatus(s string) (ProcMem, error) {
	var m ProcMem
	var seen int
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("unexpected /proc status line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("unexpected /proc status line %q", strings.TrimSpace(line))
		}
		if k == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.HWM = kb << 10
		}
		seen++
	}
	if seen != 2 {
		return m, errors.New("no VmRSS/VmHWM in /proc status")
	}
	return m, nil
}

// lineTail keeps the last max lines written to it.
type lineTail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *lineTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.max {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// HeaderColdStart is the response header Nimbus sets, in milliseconds, on a
// request that waited for its version to load.
const HeaderColdStart = "Nimbus-Cold-Start"

// api is the plain-HTTP side of a benchmark's server: inference with the
// cold-start header, the repository extension, status and metrics.
type api struct {
	base string
	hc   *http.Client
	c    *client.Client
}

func newAPI(srv *ServerProcess, conns int) *api {
	hc := &http.Client{Transport: withToken(&http.Transport{
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}, srv.Token)}
	return &api{base: srv.URL, hc: hc, c: client.New(srv.URL, client.WithHTTPClient(hc))}
}

func (a *api) close() { a.hc.CloseIdleConnections() }

// infer posts an OIP v2 REST request to model's default version (postJSON).
// buf, when non-nil, is reused for the body.
func (a *api) infer(ctx context.Context, model string, body []byte, buf *bytes.Buffer) (inferReply, error) {
	return postJSON(ctx, a.hc, a.base+"/v2/models/"+model+"/infer", body, buf)
}

// repository calls the repository extension: op is "load" or "unload".
func (a *api) repository(ctx context.Context, op, model string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/v2/repository/models/"+model+"/"+op, nil)
	if err != nil {
		return err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", op, model, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// push uploads model bytes as a blob and creates version 1 of name from it.
func (a *api) push(ctx context.Context, name string, model []byte) error {
	sum := sha256.Sum256(model)
	hexSum := hex.EncodeToString(sum[:])
	if _, err := a.c.PutBlob(ctx, registry.DefaultNamespace, bytes.NewReader(model), int64(len(model)), hexSum); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	_, err := a.c.CreateVersion(ctx, registry.CreateVersionRequest{Namespace: registry.DefaultNamespace, Model: name, SHA256: hexSum, Source: "bench"})
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	return nil
}

// status reads the default namespace's residency report.
func (a *api) status(ctx context.Context) (residency.Report, error) {
	return a.c.Status(ctx, registry.DefaultNamespace, "")
}

// metrics scrapes the server's /metrics.
func (a *api) metrics(ctx context.Context) (promText, error) { return scrapeMetrics(ctx, a.hc, a.base) }

// scrapeMetrics reads base+"/metrics" with hc.
func scrapeMetrics(ctx context.Context, hc *http.Client, base string) (promText, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metrics: %s", resp.Status)
	}
	return promText(b), nil
}

// promText is a Prometheus text exposition.
type promText string

// sum adds every sample of the metric named name (exactly: no _bucket, _sum or
// _count suffix unless given) whose labels include each of match (written
// `key="value"`). ok is false when no sample matched.
func (t promText) sum(name string, match ...string) (total float64, ok bool) {
	for line := range strings.Lines(string(t)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		rest, found := strings.CutPrefix(line, name)
		if !found || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels := ""
		if rest[0] == '{' {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		matched := true
		for _, m := range match {
			if !strings.Contains(","+labels+",", ","+m+",") {
				matched = false
				break
			}
		}
		f := strings.Fields(rest)
		if !matched || len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		total += v
		ok = true
	}
	return total, ok
}
