package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// SuiteReport is what a suite run writes.
type SuiteReport struct {
	Date    time.Time
	Command string
	Machine Machine
	Config  SuiteConfig
	Result  *SuiteResult
	// Commit is the measured tree, `git describe --always --dirty` ("" if unknown).
	Commit string
}

// find returns the cell with these coordinates.
func (r *SuiteResult) find(model, target string, batching bool, driver string, conc, batch int) (Cell, bool) {
	for _, c := range r.Cells {
		if c.Model == model && c.Target == target && c.Batching == batching && c.Driver == driver && c.Conc == conc && c.Batch == batch {
			return c, true
		}
	}
	return Cell{}, false
}

// raw returns raw-run at batch (rounded), or false.
func (r *SuiteResult) raw(model string, batch int) (Cell, bool) {
	return r.find(model, TargetRaw, false, DriverClosed, 1, max(batch, 1))
}

func (r *SuiteResult) models() []string {
	var out []string
	for _, c := range r.Cells {
		if !slices.Contains(out, c.Model) {
			out = append(out, c.Model)
		}
	}
	return out
}

func (r *SuiteResult) concs() []int {
	var out []int
	for _, c := range r.Cells {
		if c.Target != TargetRaw && !slices.Contains(out, c.Conc) {
			out = append(out, c.Conc)
		}
	}
	slices.Sort(out)
	return out
}

// bareFor is the bare server a target is compared with.
func bareFor(target string) string {
	switch target {
	case TargetNimbusREST, TargetNode:
		return TargetBareHTTP
	case TargetNimbusGRPC:
		return TargetBareGRPC
	}
	return ""
}

// TargetCheck is one of issue 3's targets, evaluated on one run.
type TargetCheck struct {
	Target   string
	Goal     string
	Measured string
	Status   string // "met", "missed", "not measured"
	Bound    string // what bounds it (filled for misses)
}

func status(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// Targets evaluates issue 3's targets on the closed-loop cells (our client).
func (r *SuiteResult) Targets() []TargetCheck {
	var out []TargetCheck
	// 1. Added latency at concurrency 1.
	for _, m := range r.models() {
		raw1, okRaw := r.raw(m, 1)
		for _, proto := range []string{TargetNimbusREST, TargetNimbusGRPC} {
			bare, okBare := r.find(m, bareFor(proto), false, DriverClosed, 1, 1)
			var parts []string
			worst := time.Duration(math.MinInt64)
			var worstCell Cell
			for _, on := range []bool{false, true} {
				c, ok := r.find(m, proto, on, DriverClosed, 1, 1)
				if !ok || !okRaw || !okBare {
					continue
				}
				added := c.P50 - bare.P50 - raw1.P50
				parts = append(parts, fmt.Sprintf("batching %s: %s µs", onOff(on), us(added)))
				if added > worst {
					worst, worstCell = added, c
				}
			}
			t := TargetCheck{Target: fmt.Sprintf("added p50 at c=1, %s, %s", protoName(proto), m), Goal: "≤ 50 µs"}
			if len(parts) == 0 {
				t.Status = "not measured"
			} else {
				t.Measured = strings.Join(parts, "; ")
				t.Status = status(worst <= 50*time.Microsecond)
				t.Bound = fmt.Sprintf("p50 %s µs = bare %s + raw %s + added %s", us(worstCell.P50), us(bare.P50), us(raw1.P50), us(worst))
			}
			out = append(out, t)
		}
	}
	// 2. REST saturation vs min(bare HTTP req/s, raw rows/s at the batch reached).
	for _, m := range r.models() {
		bare, okBare := r.best(m, TargetBareHTTP, false, DriverClosed)
		t := TargetCheck{Target: "REST rows/s at saturation, " + m, Goal: "≥ 0.7 × min(bare-http req/s, raw rows/s at the batch reached)"}
		var parts []string
		met := false
		var bound string
		for _, on := range []bool{false, true} {
			c, ok := r.best(m, TargetNimbusREST, on, DriverClosed)
			if !ok || !okBare {
				continue
			}
			b := 1
			if c.MeanBatch > 0 {
				b = int(math.Round(c.MeanBatch))
			}
			raw, okRaw := r.raw(m, b)
			if !okRaw {
				continue
			}
			limit, which := bare.ReqPerSec, "bare-http"
			if raw.RowsPerSec < limit {
				limit, which = raw.RowsPerSec, fmt.Sprintf("raw-run at batch %d", b)
			}
			ratio := c.RowsPerSec / limit
			batch := "batch size not reported"
			if c.MeanBatch > 0 {
				batch = fmt.Sprintf("mean batch %.1f", c.MeanBatch)
			}
			parts = append(parts, fmt.Sprintf("batching %s: %.0f rows/s at c=%d (%s) = %.2f × %s (%.0f)", onOff(on), c.RowsPerSec, c.Conc, batch, ratio, which, limit))
			met = met || ratio >= 0.7
			if on {
				bound = fmt.Sprintf("limit is %s; bare-http %.0f req/s, raw %.0f rows/s at batch %d", which, bare.ReqPerSec, raw.RowsPerSec, b)
			}
		}
		if len(parts) == 0 {
			t.Status = "not measured"
		} else {
			t.Measured, t.Status, t.Bound = strings.Join(parts, "; "), status(met), bound
		}
		out = append(out, t)
	}
	// 3. In-process batching lift, medium MLP, c=64 (else the highest c run).
	for _, m := range r.models() {
		if m != "mlp_medium" {
			continue
		}
		concs := r.concs()
		conc := 64
		if !slices.Contains(concs, 64) && len(concs) > 0 {
			conc = concs[len(concs)-1]
		}
		off, ok1 := r.find(m, TargetManager, false, DriverClosed, conc, 1)
		on, ok2 := r.find(m, TargetManager, true, DriverClosed, conc, 1)
		t := TargetCheck{Target: fmt.Sprintf("in-process batching lift, %s, c=%d", m, conc), Goal: "≥ 3× rows/s (on ÷ off)"}
		if !ok1 || !ok2 || off.RowsPerSec == 0 {
			t.Status = "not measured"
		} else {
			ratio := on.RowsPerSec / off.RowsPerSec
			t.Measured = fmt.Sprintf("%.0f ÷ %.0f rows/s = %.2f× (mean batch %s)", on.RowsPerSec, off.RowsPerSec, ratio, meanBatch(on))
			t.Status = status(ratio >= 3)
			if raw, ok := r.raw(m, 64); ok {
				if raw1, ok := r.raw(m, 1); ok {
					t.Bound = fmt.Sprintf("raw-run itself gains %.2f× from batch 1 to 64 (%.0f → %.0f rows/s)", raw.RowsPerSec/raw1.RowsPerSec, raw1.RowsPerSec, raw.RowsPerSec)
				}
			}
		}
		out = append(out, t)
	}
	// 4. ≥ 3× the Node peer's throughput at equal or better p99.
	for _, m := range r.models() {
		node, ok := r.best(m, TargetNode, false, DriverClosed)
		t := TargetCheck{Target: "vs Node peer (REST), " + m, Goal: "≥ 3× Node's best rows/s at p99 ≤ Node's p99 there"}
		if !ok {
			t.Status = "not measured"
			out = append(out, t)
			continue
		}
		var bestNim Cell
		for _, c := range r.Cells {
			if c.Model == m && c.Target == TargetNimbusREST && c.Driver == DriverClosed && c.P99 <= node.P99 && c.RowsPerSec > bestNim.RowsPerSec {
				bestNim = c
			}
		}
		if bestNim.RowsPerSec == 0 {
			t.Measured = fmt.Sprintf("no Nimbus REST cell has p99 ≤ Node's %s µs (Node %.0f rows/s at c=%d)", us(node.P99), node.RowsPerSec, node.Conc)
			t.Status = "missed"
		} else {
			ratio := bestNim.RowsPerSec / node.RowsPerSec
			t.Measured = fmt.Sprintf("Nimbus (batching %s, c=%d) %.0f rows/s, p99 %s µs vs Node (c=%d) %.0f rows/s, p99 %s µs: %.2f×",
				onOff(bestNim.Batching), bestNim.Conc, bestNim.RowsPerSec, us(bestNim.P99), node.Conc, node.RowsPerSec, us(node.P99), ratio)
			t.Status = status(ratio >= 3)
			if bare, ok := r.best(m, TargetBareHTTP, false, DriverClosed); ok {
				t.Bound = fmt.Sprintf("bare-http itself is %.2f× Node", bare.RowsPerSec/node.RowsPerSec)
			}
		}
		out = append(out, t)
	}
	return out
}

// best is the cell with the most rows/s for (model, target, batching, driver).
func (r *SuiteResult) best(model, target string, batching bool, driver string) (Cell, bool) {
	var b Cell
	ok := false
	for _, c := range r.Cells {
		if c.Model == model && c.Target == target && c.Batching == batching && c.Driver == driver && c.RowsPerSec > b.RowsPerSec {
			b, ok = c, true
		}
	}
	return b, ok
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func protoName(t string) string {
	if t == TargetNimbusGRPC {
		return "gRPC"
	}
	return "REST"
}

func meanBatch(c Cell) string {
	if c.MeanBatch == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", c.MeanBatch)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// WriteMarkdown writes the suite report.
func (rep SuiteReport) WriteMarkdown(w io.Writer) error {
	r, cfg := rep.Result, rep.Config
	var b strings.Builder
	fmt.Fprintf(&b, "# Nimbus benchmark suite\n\n")
	fmt.Fprintf(&b, "- date: %s\n", rep.Date.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "- command: `%s`\n", rep.Command)
	m := rep.Machine
	if p := cfg.Pin; p != nil {
		fmt.Fprintf(&b, "- machine: %s, %s; **pinned**: Nimbus (`bin/nimbus server`, a child process) and the bare servers (another) on CPU %s, the clients and raw runs on CPU %s (`taskset`); each side has its CPUs to itself\n",
			m.CPU, m.OS, p.ServerCPUs, p.ClientCPUs)
	} else {
		fmt.Fprintf(&b, "- machine: %s, %d CPUs (GOMAXPROCS %d), %s; clients, Nimbus, bare servers and peers share these cores\n", m.CPU, m.NumCPU, m.GOMAXPROCS, m.OS)
	}
	fmt.Fprintf(&b, "- software: %s, ONNX Runtime %s (1 intra-op thread, no spinning)\n", m.GoVersion, m.ORTVersion)
	fmt.Fprintf(&b, "- closed loop and in-process: %s; open loop: %s, every target of a model and concurrency offered one rate, "+
		"%.0f%% of the slowest one's closed-loop req/s; wrk/ghz: %s per cell\n",
		describeLoad(cfg.Load), openLoad(cfg.OpenLoad), 100*cfg.OpenFraction, cfg.ExternalDuration)
	fmt.Fprintf(&b, "- every request carries one row; batching on = MaxBatchSize %d, MaxQueueDelay %s; instances %d (both copies)\n",
		cfg.Batching.MaxBatchSize, cfg.Batching.MaxQueueDelay, cfg.Instances)
	if rep.Commit != "" {
		fmt.Fprintf(&b, "- source: `%s` (git describe --always --dirty)\n", rep.Commit)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}

	b.WriteString("\n## Targets\n\n| target | goal | measured | status | what bounds it |\n| --- | --- | --- | --- | --- |\n")
	for _, t := range r.Targets() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", t.Target, t.Goal, t.Measured, t.Status, t.Bound)
	}

	b.WriteString("\n## Raw ONNX Runtime (runtime/onnx Model.Run in-process, one caller)\n\n")
	b.WriteString("| model | batch | rows/s | p50 µs | p99 µs |\n| --- | ---: | ---: | ---: | ---: |\n")
	for _, c := range r.Cells {
		if c.Target == TargetRaw {
			fmt.Fprintf(&b, "| %s | %d | %.0f | %s | %s |\n", c.Model, c.Batch, c.RowsPerSec, us(c.P50), us(c.P99))
		}
	}

	for _, model := range r.models() {
		fmt.Fprintf(&b, "\n## %s: closed loop, our Go client, rows/s (p99 µs)\n\n", model)
		cols := []struct {
			t  string
			on bool
			h  string
		}{
			{TargetBareHTTP, false, "bare-http"}, {TargetNimbusREST, false, "REST off"}, {TargetNimbusREST, true, "REST on"},
			{TargetNode, false, "node"}, {TargetBareGRPC, false, "bare-grpc"}, {TargetNimbusGRPC, false, "gRPC off"},
			{TargetNimbusGRPC, true, "gRPC on"}, {TargetManager, false, "in-proc off"}, {TargetManager, true, "in-proc on"},
		}
		b.WriteString("| conc |")
		for _, c := range cols {
			fmt.Fprintf(&b, " %s |", c.h)
		}
		b.WriteString("\n| ---: |" + strings.Repeat(" ---: |", len(cols)) + "\n")
		for _, conc := range r.concs() {
			fmt.Fprintf(&b, "| %d |", conc)
			for _, col := range cols {
				if c, ok := r.find(model, col.t, col.on, DriverClosed, conc, 1); ok {
					fmt.Fprintf(&b, " %.0f (%s) |", c.RowsPerSec, us(c.P99))
				} else {
					b.WriteString(" — |")
				}
			}
			b.WriteString("\n")
		}
		raw1, _ := r.raw(model, 1)
		fmt.Fprintf(&b, "\nRatios (rows/s), same run; raw-run at batch 1 = %.0f rows/s:\n\n", raw1.RowsPerSec)
		b.WriteString("| conc | REST off ÷ bare | REST on ÷ bare | REST on ÷ off | REST on ÷ node | gRPC off ÷ bare | gRPC on ÷ bare | gRPC on ÷ off | in-proc on ÷ off | REST on ÷ raw@b | mean batch REST/gRPC/in-proc on |\n")
		b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		get := func(t string, on bool, conc int) Cell { c, _ := r.find(model, t, on, DriverClosed, conc, 1); return c }
		for _, conc := range r.concs() {
			bh, ro, rn := get(TargetBareHTTP, false, conc), get(TargetNimbusREST, false, conc), get(TargetNimbusREST, true, conc)
			nd, bg, go0, gn := get(TargetNode, false, conc), get(TargetBareGRPC, false, conc), get(TargetNimbusGRPC, false, conc), get(TargetNimbusGRPC, true, conc)
			mo, mn := get(TargetManager, false, conc), get(TargetManager, true, conc)
			rawb := raw1
			if rn.MeanBatch > 0 {
				if c, ok := r.raw(model, int(math.Round(rn.MeanBatch))); ok {
					rawb = c
				}
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s |\n", conc,
				ratio(ro.RowsPerSec, bh.RowsPerSec), ratio(rn.RowsPerSec, bh.RowsPerSec), ratio(rn.RowsPerSec, ro.RowsPerSec),
				ratio(rn.RowsPerSec, nd.RowsPerSec), ratio(go0.RowsPerSec, bg.RowsPerSec), ratio(gn.RowsPerSec, bg.RowsPerSec),
				ratio(gn.RowsPerSec, go0.RowsPerSec), ratio(mn.RowsPerSec, mo.RowsPerSec), ratio(rn.RowsPerSec, rawb.RowsPerSec),
				meanBatch(rn), meanBatch(gn), meanBatch(mn))
		}
	}

	b.WriteString("\n## Every cell\n\n")
	b.WriteString(SuiteTable(r.Cells))
	b.WriteString(suiteLegend)
	_, err := io.WriteString(w, b.String())
	return err
}

func openLoad(l Load) string {
	if l.Iterations > 0 {
		return fmt.Sprintf("%d calls per worker", l.Iterations)
	}
	return l.Duration.String()
}

// SuiteTable renders every cell; ÷bare compares with the bare server of the same
// protocol under the same driver and concurrency.
func SuiteTable(cells []Cell) string {
	var b strings.Builder
	b.WriteString("| model | driver | target | batching | conc | offered req/s | samples | rows/s | p50 µs | p99 µs | mean batch | ÷ bare |\n")
	b.WriteString("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range cells {
		if c.Target == TargetRaw {
			continue
		}
		offered, div := "—", "—"
		if c.Offered > 0 {
			offered = fmt.Sprintf("%.0f", c.Offered)
		}
		if bt := bareFor(c.Target); bt != "" {
			for _, o := range cells {
				if o.Model == c.Model && o.Target == bt && o.Driver == c.Driver && o.Conc == c.Conc {
					div = ratio(c.RowsPerSec, o.RowsPerSec)
				}
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %d | %.0f | %s | %s | %s | %s |\n", c.Model, c.Driver, c.Target,
			onOff(c.Batching), c.Conc, offered, c.Samples, c.RowsPerSec, us(c.P50), us(c.P99), meanBatch(c), div)
	}
	return b.String()
}

const suiteLegend = `
- drivers: closed = our Go client, N workers each sending when the last answer arrives; open = our Go client at a
  fixed arrival rate with latency counted from the intended send time (no coordinated omission), N workers;
  wrk = ` + "`wrk -t1 -cN`" + `; ghz = ` + "`ghz --cpus 1 -cN`" + ` (one HTTP/2 connection, JSON→protobuf in the client).
- targets: bare-http / bare-grpc answer Nimbus's own answer bytes, fixed; nimbus-rest is OIP JSON over HTTP/1.1
  keep-alive; nimbus-grpc sends raw_input_contents; node-rest is onnxruntime-node behind Node's http server
  (bench/peers/node); manager is serving.Manager.Infer in-process.
- batching off = the model without a Batching setting; on = a second copy of the same model with it.
- open loop: every target of one model and concurrency is offered the same rate (offered req/s), a fraction
  (-open-fraction) of the closed-loop req/s of the slowest of them, so each can carry it: compare their p50/p99.
  Its ÷ bare is delivered rows/s at that common rate, ≈ 1 for a target that kept up.
- mean batch = rows per runtime call during the cell's measured phase (the warm-up excluded), from
  ` + "`nimbus_batch_size`" + ` (sum ÷ count of the model's series, scraped before and after).
`
