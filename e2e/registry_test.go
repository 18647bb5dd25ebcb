package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/registry"
)

func blobFile(dataDir, sha string) string {
	return filepath.Join(dataDir, "blobs", "sha256", sha[:2], sha)
}

func TestDeleteGuardsAndGC(t *testing.T) {
	// Without a grace period a blob goes with its last version at once.
	srv := testutil.StartServer(t, func(c *config.Config) { c.BlobGCGrace = 0 })
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m", "--alias", "champion")
	mustCLI(t, srv, "models", "push", testutil.Model("mlp_medium"), "--name", "m")
	c := client.New(srv.URL, client.WithToken(srv.Token))
	ctx := context.Background()
	v1, err := c.GetVersion(ctx, "default", "m", "1")
	if err != nil {
		t.Fatal(err)
	}

	// Refused while an alias references it.
	_, errOut, code := runCLI(t, srv, "models", "delete", "m@1")
	if code != 1 || !strings.Contains(errOut, "referenced by alias champion") {
		t.Fatalf("delete referenced version: exit %d %q", code, errOut)
	}
	var apiErr *client.APIError
	if err := c.DeleteVersion(ctx, "default", "m", 1, false); !errors.As(err, &apiErr) || apiErr.Status != 409 || apiErr.Code != "conflict" {
		t.Fatalf("API delete referenced version: %v", err)
	}
	// An unreferenced version deletes; its blob is collected.
	v2, _ := c.GetVersion(ctx, "default", "m", "2")
	mustCLI(t, srv, "models", "delete", "m@2")
	if _, err := os.Stat(blobFile(srv.DataDir, v2.SHA256)); !os.IsNotExist(err) {
		t.Errorf("blob of deleted version still on disk: %v", err)
	}
	// --force deletes through the alias.
	mustCLI(t, srv, "models", "delete", "m@1", "--force")
	if _, err := os.Stat(blobFile(srv.DataDir, v1.SHA256)); !os.IsNotExist(err) {
		t.Errorf("blob of force-deleted version still on disk: %v", err)
	}
	if st, _ := postJSON(t, srv.URL+"/v2/models/m/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`); st != 404 {
		t.Errorf("deleted model still served: %d", st)
	}
}

func TestInvalidArtifactCreatesNothing(t *testing.T) {
	srv := testutil.StartServer(t)
	bad := filepath.Join(t.TempDir(), "bad.onnx")
	os.WriteFile(bad, []byte("this is not a protobuf at all, just text"), 0o644)
	_, errOut, code := runCLI(t, srv, "models", "push", bad, "--name", "bad")
	if code != 1 || !strings.Contains(errOut, "not a valid onnx model") {
		t.Fatalf("push of garbage: exit %d %q", code, errOut)
	}
	if st := getJSON(t, srv.URL+"/api/v1/namespaces/default/models/bad", nil); st != 404 {
		t.Errorf("a failed push left a model behind: %d", st)
	}
}

func TestInterruptedUploadCreatesNoVersion(t *testing.T) {
	srv := testutil.StartServer(t)
	data, err := os.ReadFile(testutil.Model("mlp_medium"))
	if err != nil {
		t.Fatal(err)
	}
	// A plain upload whose connection is cut mid-body.
	pr, pw := io.Pipe()
	go func() {
		pw.Write(data[:len(data)/2])
		pw.CloseWithError(errors.New("client went away"))
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/namespaces/default/blobs", pr)
	req.ContentLength = int64(len(data))
	if resp, err := testutil.Client.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("cut upload answered %d", resp.StatusCode)
		}
	}
	// Nothing half-written sits in the blob store.
	testutil.Eventually(t, 5*time.Second, func() bool { return countFiles(t, filepath.Join(srv.DataDir, "blobs", "tmp")) == 0 }, "temp file left behind")
	if n := countFiles(t, filepath.Join(srv.DataDir, "blobs", "sha256")); n != 0 {
		t.Errorf("%d blobs stored from a cut upload", n)
	}
	// A resumable upload that stops halfway creates no version either, and resumes.
	c := client.New(srv.URL, client.WithToken(srv.Token))
	ctx := context.Background()
	up, err := c.StartUpload(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadChunk(ctx, "default", up.ID, 0, data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	var page registry.ModelPage
	if st := getJSON(t, srv.URL+"/api/v1/namespaces/default/models", &page); st != 200 || len(page.Items) != 0 {
		t.Fatalf("half an upload created a model: %+v", page.Items)
	}
	off, err := c.UploadOffset(ctx, "default", up.ID)
	if err != nil || off != int64(len(data)/2) {
		t.Fatalf("offset %d %v", off, err)
	}
	if _, err := c.UploadChunk(ctx, "default", up.ID, off, data[off:]); err != nil {
		t.Fatal(err)
	}
	sum, _, _ := client.FileSHA256(testutil.Model("mlp_medium"))
	info, err := c.FinishUpload(ctx, "default", up.ID, sum)
	if err != nil || info.SHA256 != sum {
		t.Fatalf("finish: %+v %v", info, err)
	}
	v, err := c.CreateVersion(ctx, registry.CreateVersionRequest{Namespace: "default", Model: "resumed", SHA256: sum})
	if err != nil || v.Version != 1 {
		t.Fatalf("create version from resumed upload: %+v %v", v, err)
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestCorruptArtifactIsRefused(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m")
	v, err := client.New(srv.URL, client.WithToken(srv.Token)).GetVersion(context.Background(), "default", "m", "1")
	if err != nil {
		t.Fatal(err)
	}
	path := blobFile(srv.DataDir, v.SHA256)
	data, _ := os.ReadFile(path)
	data[100] ^= 0x55
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	st, body := postJSON(t, srv.URL+"/v2/models/m/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`)
	if st != 503 || !strings.Contains(string(body), "corrupt") {
		t.Fatalf("corrupt artifact: %d %s", st, body)
	}
}

func TestServingConfigAppliesOnNextLoad(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m")
	mustCLI(t, srv, "models", "config", "m", "--threads", "2")
	var view struct {
		Effective registry.ServingConfig `json:"effective"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "models", "config", "m", "-o", "json")), &view); err != nil {
		t.Fatal(err)
	}
	if view.Effective.Threads != 2 {
		t.Errorf("effective threads = %d", view.Effective.Threads)
	}
	_, errOut, code := runCLI(t, srv, "models", "config", "m", "--threads", "1000")
	if code != 1 || !strings.Contains(errOut, "serving.threads") {
		t.Errorf("invalid threads: exit %d %q", code, errOut)
	}
	if st, b := postJSON(t, srv.URL+"/v2/models/m/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`); st != 200 {
		t.Fatalf("%d %s", st, b)
	}
}

// TestShutdownDrainsInFlight: requests running when shutdown starts complete with 200.
func TestShutdownDrainsInFlight(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp_medium"), "--name", "m")
	rows := 4000
	var sb bytes.Buffer
	sb.WriteString(fmt.Sprintf(`{"inputs":[{"name":"x","shape":[%d,64],"datatype":"FP32","data":[`, rows))
	for i := range rows * 64 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString("0.5")
	}
	sb.WriteString(`]}]}`)
	body := sb.Bytes()
	// Warm the model so requests are running, not loading, when we stop.
	if st, b := postJSON(t, srv.URL+"/v2/models/m/infer", string(body)); st != 200 {
		t.Fatalf("%d %.200s", st, b)
	}
	const n = 4
	var wg sync.WaitGroup
	started := make(chan struct{}, n)
	results := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", srv.URL+"/v2/models/m/infer", &signalReader{r: bytes.NewReader(body), started: started})
			req.ContentLength = int64(len(body))
			resp, err := testutil.Client.Do(req)
			if err != nil {
				results <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				results <- fmt.Errorf("status %d", resp.StatusCode)
				return
			}
			results <- nil
		}()
	}
	for range n {
		<-started // every request has been sent with its full body
	}
	// ... and the server has begun handling every one of them.
	testutil.Eventually(t, 10*time.Second, func() bool { return srv.Sys.Metrics.InFlight("rest") == n }, "requests never reached the handler")
	srv.Stop()
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("in-flight request failed during shutdown: %v", err)
		}
	}
}

// signalReader signals once its last byte has been read by the HTTP client.
type signalReader struct {
	r       *bytes.Reader
	started chan struct{}
	once    sync.Once
}

func (s *signalReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if s.r.Len() == 0 {
		s.once.Do(func() { s.started <- struct{}{} })
	}
	return n, err
}
