package testutil

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/nimbus-ai/nimbus/registry/blob"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Stores opens a SQLite store (registry, resources and audit log) and a blob
// store in a fresh temp dir, closed when the test ends: the real parts tests
// wire a registry from.
func Stores(t testing.TB) (*sqlite.Store, *blob.FS) {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "nimbus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := blob.NewFS(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return db, blobs
}

// FixedInspector is a runtime.Inspector giving every artifact the same
// batchable signature (x FP32 [-1,4] → y FP32 [-1,1]), for tests that need
// versions but not real models.
type FixedInspector struct{}

// Inspect implements runtime.Inspector.
func (FixedInspector) Inspect(io.ReaderAt, int64) (tensor.Signature, error) {
	return tensor.Signature{
		Inputs:  []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 4}}},
		Outputs: []tensor.TensorSpec{{Name: "y", DataType: tensor.FP32, Shape: []int64{-1, 1}}},
	}, nil
}
