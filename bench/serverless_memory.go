package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/nimbus-ai/nimbus/internal/memstat"
	"github.com/nimbus-ai/nimbus/runtime"
)

// MemPoint is a process's memory after a number of cycles.
type MemPoint struct {
	Cycle int
	RSS   int64 // VmRSS
	HWM   int64 // VmHWM
}

// MemSeries is one memory-return loop: checkpoints after cycle 1, every tenth
// of the run, and the last cycle.
type MemSeries struct {
	What   string
	Points []MemPoint
	// Before is VmRSS before the first cycle (the model pushed, nothing loaded).
	Before int64
	// Cycle is each whole cycle's duration.
	Cycle Dist
	// Skipped says why the series was not run ("" when it was).
	Skipped string
}

// First and Last are the checkpoints after the first and the last cycle.
func (s MemSeries) First() MemPoint { return s.at(0) }
func (s MemSeries) Last() MemPoint  { return s.at(len(s.Points) - 1) }

func (s MemSeries) at(i int) MemPoint {
	if i < 0 || i >= len(s.Points) {
		return MemPoint{}
	}
	return s.Points[i]
}

// Ratio is VmRSS after the last cycle ÷ after the first.
func (s MemSeries) Ratio() float64 {
	if s.First().RSS == 0 {
		return 0
	}
	return float64(s.Last().RSS) / float64(s.First().RSS)
}

// MemoryResult is the memory-return benchmark.
type MemoryResult struct {
	Model  string
	Cycles int
	// Server: POST /v2/repository/models/M/load, one inference, POST …/unload,
	// RSS of the server process.
	Server MemSeries
	// InProcess: runtime/onnx Load, Run, Close in the bench process, its RSS
	// (Go garbage returned with debug.FreeOSMemory before each reading);
	// InProcessTrim: the same with malloc_trim(0) after each Close.
	InProcess, InProcessTrim MemSeries
}

// After an unload the server's RSS is read once it has settled: the server
// returns freed memory in a background trim that runs up to serverTrimDelay
// after an unload (serving.trimEvery), so until then RSS can hold still and yet
// not be settled. From then on it is read every settlePoll until two
// consecutive reads agree within settleTol, or settleLimit after the unload.
const (
	serverTrimDelay = time.Second
	settlePoll      = 200 * time.Millisecond
	settleTol       = 0.01
	settleLimit     = 10 * time.Second
)

// settledMem reads srv's memory once settled after an unload that returned at
// since (see serverTrimDelay). settled is false when RSS still moved at
// settleLimit; the last read is returned then.
func settledMem(ctx context.Context, srv *ServerProcess, since time.Time) (m ProcMem, settled bool, err error) {
	sleep := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	if err := sleep(time.Until(since.Add(serverTrimDelay))); err != nil {
		return m, false, err
	}
	prev, err := srv.Mem()
	if err != nil {
		return m, false, err
	}
	for {
		if err := sleep(settlePoll); err != nil {
			return m, false, err
		}
		if m, err = srv.Mem(); err != nil {
			return m, false, err
		}
		if math.Abs(float64(m.RSS-prev.RSS)) <= settleTol*float64(prev.RSS) {
			return m, true, nil
		}
		if time.Since(since) >= settleLimit {
			return m, false, nil
		}
		prev = m
	}
}

func checkpoint(cycle, cycles int) bool {
	step := max(cycles/10, 1)
	return cycle == 1 || cycle%step == 0 || cycle == cycles
}

// runMemory runs the memory-return loops: against a server, then in-process.
func (e *slEnv) runMemory(ctx context.Context) (_ MemoryResult, err error) {
	c := e.cfg.Memory
	res := MemoryResult{Model: c.Model, Cycles: c.Cycles}
	if c.Cycles < 1 {
		return res, fmt.Errorf("memory cycles must be positive, got %d", c.Cycles)
	}
	path := filepath.Join(e.cfg.RepoRoot, "testdata", "models", c.Model+".onnx")
	model, err := os.ReadFile(path)
	if err != nil {
		return res, err
	}
	dir := filepath.Join(e.work, "memory")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	p, err := e.newProbe(ctx, filepath.Join(dir, "model.onnx"), model)
	if err != nil {
		return res, err
	}
	if res.Server, err = e.memoryServer(ctx, dir, model, p); err != nil {
		return res, err
	}
	e.progress("memory: server RSS %d after cycle 1, %d after cycle %d (×%.3f)", res.Server.First().RSS, res.Server.Last().RSS, c.Cycles, res.Server.Ratio())
	if res.InProcess, err = e.memoryInProcess(ctx, filepath.Join(dir, "model.onnx"), p, false); err != nil {
		return res, err
	}
	if res.InProcessTrim, err = e.memoryInProcess(ctx, filepath.Join(dir, "model.onnx"), p, true); err != nil {
		return res, err
	}
	e.progress("memory: in-process ×%.3f, with malloc_trim ×%.3f", res.InProcess.Ratio(), res.InProcessTrim.Ratio())
	return res, nil
}

func (e *slEnv) memoryServer(ctx context.Context, dir string, model []byte, p *probe) (_ MemSeries, err error) {
	s := MemSeries{What: "server"}
	srv, err := e.startServer(ctx, filepath.Join(dir, "data"), "0")
	if err != nil {
		return s, err
	}
	defer e.stopServer(srv, "memory return", &err)
	a := newAPI(srv, 1)
	defer a.close()
	name := "mem-" + e.cfg.Memory.Model
	if err := a.push(ctx, name, model); err != nil {
		return s, err
	}
	m, err := srv.Mem()
	if err != nil {
		return s, err
	}
	s.Before = m.RSS
	cycles := e.cfg.Memory.Cycles
	lat := make([]time.Duration, 0, cycles)
	for i := 1; i <= cycles; i++ {
		t0 := time.Now()
		if err := a.repository(ctx, "load", name); err != nil {
			return s, fmt.Errorf("cycle %d: %w", i, err)
		}
		r, err := a.infer(ctx, name, p.body, nil)
		if err != nil {
			return s, fmt.Errorf("cycle %d: %w", i, err)
		}
		if r.status != 200 {
			return s, fmt.Errorf("cycle %d: HTTP %d: %.300s", i, r.status, r.body)
		}
		if err := p.check(r.body); err != nil {
			return s, fmt.Errorf("cycle %d: %w", i, err)
		}
		if err := a.repository(ctx, "unload", name); err != nil {
			return s, fmt.Errorf("cycle %d: %w", i, err)
		}
		unloaded := time.Now()
		lat = append(lat, unloaded.Sub(t0))
		if checkpoint(i, cycles) {
			m, settled, err := settledMem(ctx, srv, unloaded)
			if err != nil {
				return s, err
			}
			if !settled {
				e.notes = append(e.notes, fmt.Sprintf("memory return: server RSS still moved by more than %.0f%% per %s %s after the unload of cycle %d; read as it was then",
					100*settleTol, settlePoll, settleLimit, i))
			}
			s.Points = append(s.Points, MemPoint{Cycle: i, RSS: m.RSS, HWM: m.HWM})
		}
	}
	s.Cycle = distOf(lat)
	return s, nil
}

func (e *slEnv) memoryInProcess(ctx context.Context, path string, p *probe, trim bool) (MemSeries, error) {
	s := MemSeries{What: "in-process"}
	if trim {
		s.What = "in-process + malloc_trim"
		// memstat trims only where it can read the C allocator (cgo on Linux).
		if _, ok := memstat.NativeInUse(); !ok {
			s.Skipped = "malloc_trim needs cgo on Linux"
			return s, nil
		}
	}
	read := func() (ProcMem, error) {
		debug.FreeOSMemory()
		return ReadProcMem("self")
	}
	m, err := read()
	if err != nil {
		return s, err
	}
	s.Before = m.RSS
	cycles := e.cfg.Memory.Cycles
	lat := make([]time.Duration, 0, cycles)
	for i := 1; i <= cycles; i++ {
		t0 := time.Now()
		model, err := e.rt.Load(ctx, path, runtime.Options{})
		if err != nil {
			return s, fmt.Errorf("cycle %d: %w", i, err)
		}
		out, err := model.Run(ctx, p.inputs, nil)
		model.Close()
		if err != nil {
			return s, fmt.Errorf("cycle %d: %w", i, err)
		}
		if err := sameOutputs(p.want, out); err != nil {
			return s, fmt.Errorf("cycle %d: %w", i, err)
		}
		if trim {
			memstat.Trim()
		}
		lat = append(lat, time.Since(t0))
		if checkpoint(i, cycles) {
			m, err := read()
			if err != nil {
				return s, err
			}
			s.Points = append(s.Points, MemPoint{Cycle: i, RSS: m.RSS, HWM: m.HWM})
		}
	}
	s.Cycle = distOf(lat)
	return s, nil
}
