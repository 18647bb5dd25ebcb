package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is what a run writes: where and how it ran, and the cells.
type Report struct {
	Date    time.Time
	Command string
	Machine Machine
	Load    Load
	Results []Result
}

// pathNotes says what each path measures, for the legend.
var pathNotes = map[string]string{
	PathORT:          "ONNX Runtime `AdvancedSession.Run` in-process, tensors bound once (one session per worker): ORT alone",
	PathRaw:          "`runtime/onnx` Model.Run in-process (Nimbus's ORT adapter, context.Background): the physical limit",
	PathManager:      "`serving.Manager.Infer` in-process: resolve, validate, stats, run (cancellable context, as a request's)",
	PathRESTHandler:  "the OIP REST `http.Handler` called in-process: JSON decode + Manager + JSON encode, no network",
	PathRESTLoopback: "Nimbus REST over 127.0.0.1, net/http client with keep-alive, JSON body",
	PathBareHTTP:     "bare net/http server answering fixed bytes of Nimbus's answer size, same client",
	PathGRPCLoopback: "Nimbus gRPC over 127.0.0.1, generated client, raw_input_contents",
	PathBareGRPC:     "bare grpc-go server answering a fixed ModelInferResponse (Nimbus's), same client",
}

// WriteMarkdown writes the report as a markdown document.
func (r Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Nimbus serving-core benchmark\n\n")
	fmt.Fprintf(&b, "- date: %s\n", r.Date.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "- command: `%s`\n", r.Command)
	m := r.Machine
	fmt.Fprintf(&b, "- machine: %s, %d CPUs (GOMAXPROCS %d), %s\n", m.CPU, m.NumCPU, m.GOMAXPROCS, m.OS)
	fmt.Fprintf(&b, "- software: %s, ONNX Runtime %s (1 intra-op thread, no spinning)\n", m.GoVersion, m.ORTVersion)
	fmt.Fprintf(&b, "- load: %s\n", describeLoad(r.Load))
	fmt.Fprintf(&b, "- client and servers share the same cores; closed loop (each worker sends its next request when the last one returns)\n\n")
	b.WriteString(Table(r.Results))
	b.WriteString("\nadded = p50 (p99) − raw-run's for in-process paths; − (raw-run + bare server of the same protocol) for loopback paths;\n")
	b.WriteString("for raw-run itself, − ort-direct's (the cost of Nimbus's runtime adapter).\n")
	b.WriteString("÷raw = rows/s ÷ raw-run's rows/s at the same model, batch and concurrency (raw-run: ÷ ort-direct's).\n\n")
	for _, p := range Paths {
		fmt.Fprintf(&b, "- `%s`: %s\n", p, pathNotes[p])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describeLoad(l Load) string {
	warm := l.Warmup.String()
	if l.WarmupIterations > 0 {
		warm = fmt.Sprintf("%d iterations", l.WarmupIterations)
	}
	meas := l.Duration.String()
	if l.Iterations > 0 {
		meas = fmt.Sprintf("%d iterations per worker", l.Iterations)
	}
	return fmt.Sprintf("warm-up %s, then %s per cell", warm, meas)
}

// Table renders results as a markdown table.
func Table(rs []Result) string {
	var b strings.Builder
	b.WriteString("| model | batch | conc | path | samples | req/s | rows/s | p50 µs | p99 µs | added p50 µs | added p99 µs | ÷raw |\n")
	b.WriteString("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rs {
		added50, added99, ratio := "—", "—", "—"
		if r.HasAdded {
			added50, added99 = us(r.AddedP50), us(r.AddedP99)
			ratio = fmt.Sprintf("%.2f", r.RawRatio)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %d | %.0f | %.0f | %s | %s | %s | %s | %s |\n",
			r.Model, r.Batch, r.Conc, r.Path, r.Samples, r.ReqPerSec, r.RowsPerSec, us(r.P50), us(r.P99), added50, added99, ratio)
	}
	return b.String()
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }
