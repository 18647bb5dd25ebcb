package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/runtime/onnx/onnxtest"
	"github.com/nimbus-ai/nimbus/tensor"
)

// TestModelsCannotReadServerFiles is defect 1 of issue 10: a model whose output
// is an initializer kept in an "external data" file named "../../.../secret"
// made ONNX Runtime read that file (resolved against the server's working
// directory) and infer returned its bytes. Push refuses such a model; one put
// into the blob store and registry behind the API's back fails to load.
func TestModelsCannotReadServerFiles(t *testing.T) {
	secret := []byte("NIMBUS-SECRET-0123456789abcdef")
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd() // the in-process server's working directory
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(cwd, file)
	if err != nil || !strings.HasPrefix(rel, "../") {
		t.Fatalf("relative path %q: %v", rel, err)
	}
	n := int64(len(secret))
	evil := onnxtest.ExfiltrationModel(rel, n)
	path := filepath.Join(t.TempDir(), "evil.onnx")
	if err := os.WriteFile(path, evil, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := testutil.StartServer(t)
	ctx := context.Background()
	c := client.New(srv.URL, client.WithToken(srv.Token))
	wantMsg := `initializer "w" keeps its data in an external file ("` + rel + `"); Nimbus accepts only self-contained ONNX models`

	// Push: refused with 400 and a message naming the tensor and the file.
	_, err = c.PushFile(ctx, "default", "evil", path, registry.CreateVersionRequest{}, nil)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || !strings.Contains(apiErr.Message, wantMsg) {
		t.Fatalf("push: %v, want 400 with %q", err, wantMsg)
	}
	_, errOut, code := runCLI(t, srv, "models", "push", path, "--name", "evil")
	if code != 1 || !strings.Contains(errOut, wantMsg) {
		t.Fatalf("CLI push: exit %d %q", code, errOut)
	}
	if _, err := c.GetModel(ctx, "default", "evil"); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("a refused push left a model: %v", err)
	}

	// The same bytes in the blob store and the registry, not through the API:
	// the load refuses them before ONNX Runtime sees them.
	info, err := srv.Sys.Blobs.Put(ctx, bytes.NewReader(evil), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.Sys.Store.CreateVersion(ctx, registry.Version{
		Namespace: "default", Model: "evil", Format: "onnx", SHA256: info.SHA256, Size: info.Size, CreatedAt: time.Now(),
		Signature: tensor.Signature{
			Inputs:  []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 1}, Kind: "tensor"}},
			Outputs: []tensor.TensorSpec{{Name: "y", DataType: tensor.Uint8, Shape: []int64{n}, Kind: "tensor"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{srv.URL + "/v2/models/evil/infer", srv.URL + "/v2/models/evil/versions/1/infer"} {
		st, body := postJSON(t, url, `{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[0]}]}`)
		if st < 400 || st > 599 {
			t.Fatalf("infer on a model with external data: %d %s", st, body)
		}
		if bytes.Contains(body, secret[:8]) || strings.Contains(string(body), "78,73,77,66") { // "NIMB" as UINT8 data
			t.Fatalf("the answer carries the file's bytes: %s", body)
		}
		var answer struct{ Error string }
		if err := json.Unmarshal(body, &answer); err != nil || !strings.Contains(answer.Error, wantMsg) {
			t.Errorf("infer: %d %s, want it to say %q", st, body, wantMsg)
		}
	}
}
