package sqlite

import (
	"context"
	"path/filepath"
	"testing"
)

// TestArtifactCosts: a cost is kept per artifact and runtime, replaced by a
// later measurement, survives a reopen, and goes when its artifact's costs
// are deleted.
func TestArtifactCosts(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "registry.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	const sha = "066a5f4d722095ed83eb19fcd632da5762ba7a2d0847701bd45805dc614e5bf4"
	if _, ok, err := s.ArtifactCost(ctx, sha, "onnx 1.24.1"); ok || err != nil {
		t.Fatalf("a cost before any was set: %v %v", ok, err)
	}
	for _, c := range []struct {
		runtime string
		cost    int64
	}{{"onnx 1.24.1", 1000}, {"onnx 1.24.1", 1285136}, {"onnx 1.25.0", 7}} {
		if err := s.SetArtifactCost(ctx, sha, c.runtime, c.cost); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for runtime, want := range map[string]int64{"onnx 1.24.1": 1285136, "onnx 1.25.0": 7} {
		if got, ok, err := s.ArtifactCost(ctx, sha, runtime); !ok || got != want || err != nil {
			t.Errorf("%s: cost %d, %v, %v; want %d", runtime, got, ok, err, want)
		}
	}
	if err := s.DeleteArtifactCosts(ctx, sha); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ArtifactCost(ctx, sha, "onnx 1.24.1"); ok || err != nil {
		t.Errorf("a cost after its artifact's were deleted: %v %v", ok, err)
	}
}
