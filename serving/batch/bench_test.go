package batch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/tensor"
)

// BenchmarkBatcher drives one batcher in-process with closed-loop callers of one
// row each (mlp_medium): rows/s and the mean rows per runtime call, batching on
// and off. `go test -run '^$' -bench Batcher -benchtime 3s ./serving`
func BenchmarkBatcher(b *testing.B) {
	for _, conc := range []int{1, 8, 64} {
		for _, on := range []bool{false, true} {
			name := fmt.Sprintf("conc=%d/batching=%v", conc, on)
			b.Run(name, func(b *testing.B) {
				g := newGated(b, "mlp_medium")
				cfg := Config{}
				if on {
					cfg = batching(64, time.Millisecond, 1)
				}
				bt := New(context.Background(), g, cfg, nil, discardLog())
				defer bt.Close()
				in := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{1, 64}, Data: make([]byte, 256)}
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							if _, _, err := bt.Submit(context.Background(), []*tensor.Tensor{in}, nil); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				el := time.Since(start)
				b.StopTimer()
				calls := len(g.calls())
				b.ReportMetric(float64(b.N)/el.Seconds(), "rows/s")
				b.ReportMetric(float64(b.N)/float64(max(calls, 1)), "rows/call")
			})
		}
	}
}
