package onnx

import (
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	o "github.com/nimbus-ai/nimbus/runtime/onnx/onnxtest"
	"github.com/nimbus-ai/nimbus/tensor"
)

// writeLargeModel writes a model whose initializer w holds raw bytes of
// rawSize (a hole in a sparse file: no disk is used) and whose graph computes
// y = x + w. It returns the file's size.
func writeLargeModel(t testing.TB, path string, rawSize int64) int64 {
	t.Helper()
	tensorHead := o.Cat(o.Varint(1, uint64(rawSize/4)), o.Varint(2, o.Float), o.Str(8, "w"))
	tensorHead = protowire.AppendVarint(protowire.AppendTag(tensorHead, 9, protowire.BytesType), uint64(rawSize))
	tensorLen := int64(len(tensorHead)) + rawSize
	before := o.Bytes(1, o.Node("add", "Add", []string{"x", "w"}, []string{"y"}))
	before = protowire.AppendVarint(protowire.AppendTag(before, 5, protowire.BytesType), uint64(tensorLen))
	before = append(before, tensorHead...)
	after := o.Cat(o.Bytes(11, o.ValueInfo("x", o.Float, -1, rawSize/4)), o.Bytes(12, o.ValueInfo("y", o.Float, -1, rawSize/4)))
	graphLen := int64(len(before)) + rawSize + int64(len(after))
	head := o.Cat(o.Varint(1, 8), o.Bytes(8, o.Cat(o.Str(1, ""), o.Varint(2, 17))))
	head = protowire.AppendVarint(protowire.AppendTag(head, 7, protowire.BytesType), uint64(graphLen))
	head = append(head, before...)

	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(after, int64(len(head))+rawSize); err != nil {
		t.Fatal(err)
	}
	return int64(len(head)) + rawSize + int64(len(after))
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// TestInspectLargeModelReadsOnlyHeaders: inspecting a 1 GiB model reads its
// headers and steps over the weights, so it reads and allocates a few KiB, not
// the file (os.ReadFile of the whole artifact before).
func TestInspectLargeModelReadsOnlyHeaders(t *testing.T) {
	const rawSize = 1 << 30
	path := filepath.Join(t.TempDir(), "large.onnx")
	size := writeLargeModel(t, path, rawSize)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &countingReader{r: f}

	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	sig, err := Inspector{}.Inspect(r, size)
	goruntime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	want := []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, rawSize / 4}, Kind: "tensor"}}
	if len(sig.Inputs) != 1 || sig.Inputs[0].Name != want[0].Name || sig.Inputs[0].Shape[1] != want[0].Shape[1] {
		t.Errorf("signature %+v", sig)
	}
	const bound = 1 << 20
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > bound {
		t.Errorf("inspecting a %d-byte model allocated %d bytes (bound %d)", size, alloc, bound)
	}
	if n := r.n.Load(); n > bound {
		t.Errorf("inspecting a %d-byte model read %d bytes (bound %d)", size, n, bound)
	}
	t.Logf("%d-byte model: read %d bytes, allocated %d bytes", size, r.n.Load(), after.TotalAlloc-before.TotalAlloc)
}

// BenchmarkInspectLarge inspects a model with a 1 GiB initializer from a file.
func BenchmarkInspectLarge(b *testing.B) {
	path := filepath.Join(b.TempDir(), "large.onnx")
	writeLargeModel(b, path, 1<<30)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := InspectFile(path); err != nil {
			b.Fatal(err)
		}
	}
}
