package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nimbus-ai/nimbus/registry"
)

// Blob API headers (as the server's mgmt package names them).
const (
	headerContentSHA256 = "Nimbus-Content-SHA256"
	headerUploadOffset  = "Upload-Offset"
)

// Upload is a resumable upload session.
type Upload struct {
	ID     string `json:"id"`
	Offset int64  `json:"offset"`
}

func blobsPath(ns string) string { return "/api/v1/namespaces/" + esc(ns) + "/blobs" }

func uploadPath(ns, id string) string { return blobsPath(ns) + "/uploads/" + esc(id) }

// PutBlob uploads a blob in one request. sha256, when set, is verified by the
// server; size, when known (> 0), is sent as Content-Length.
func (c *Client) PutBlob(ctx context.Context, ns string, r io.Reader, size int64, sha256 string) (registry.BlobInfo, error) {
	req := request{method: http.MethodPost, path: blobsPath(ns), body: r, header: http.Header{}}
	if sha256 != "" {
		req.header.Set(headerContentSHA256, sha256)
	}
	if size > 0 {
		req.body, req.length = io.LimitReader(r, size), size
	}
	req.header.Set("Content-Type", "application/octet-stream")
	var info registry.BlobInfo
	err := c.call(ctx, req, &info)
	return info, err
}

// StartUpload opens a resumable upload.
func (c *Client) StartUpload(ctx context.Context, ns string) (Upload, error) {
	var u Upload
	err := c.call(ctx, request{method: http.MethodPost, path: blobsPath(ns) + "/uploads"}, &u)
	return u, err
}

// UploadOffset returns how many bytes the server holds for an upload.
func (c *Client) UploadOffset(ctx context.Context, ns, id string) (int64, error) {
	var u Upload
	err := c.call(ctx, request{method: http.MethodGet, path: uploadPath(ns, id)}, &u)
	return u.Offset, err
}

// UploadChunk appends chunk at offset and returns the new offset. When the
// server's upload ends elsewhere (409) it returns that offset with the error;
// otherwise an error comes with -1.
func (c *Client) UploadChunk(ctx context.Context, ns, id string, offset int64, chunk []byte) (int64, error) {
	req := request{method: http.MethodPatch, path: uploadPath(ns, id), body: bytes.NewReader(chunk), header: http.Header{}}
	req.header.Set(headerUploadOffset, strconv.FormatInt(offset, 10))
	req.header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(ctx, req)
	if err != nil {
		var ae *APIError
		if resp != nil && errors.As(err, &ae) && ae.Status == http.StatusConflict {
			if n, perr := strconv.ParseInt(resp.Header.Get(headerUploadOffset), 10, 64); perr == nil {
				return n, err
			}
		}
		return -1, err
	}
	defer resp.Body.Close()
	var u Upload
	if err := jsonDecode(resp.Body, &u); err != nil {
		return -1, fmt.Errorf("upload chunk: %w", err)
	}
	return u.Offset, nil
}

// FinishUpload verifies the upload against sha256 and stores it as a blob.
func (c *Client) FinishUpload(ctx context.Context, ns, id, sha256 string) (registry.BlobInfo, error) {
	var info registry.BlobInfo
	err := c.call(ctx, request{method: http.MethodPut, path: uploadPath(ns, id), query: url.Values{"sha256": {sha256}}}, &info)
	return info, err
}

// CancelUpload discards an upload.
func (c *Client) CancelUpload(ctx context.Context, ns, id string) error {
	return c.call(ctx, request{method: http.MethodDelete, path: uploadPath(ns, id)}, nil)
}

// FileSHA256 returns the hex sha256 and size of a file.
func FileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("hash file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// PushFile uploads the file at path through the resumable API and creates a
// version of model from it. req carries the version's other fields (aliases,
// version number, lineage...); its Namespace, Model and SHA256 are filled in.
// A failed chunk is retried from the offset the server reports. progress, when
// non-nil, is called with the bytes the server holds so far.
func (c *Client) PushFile(ctx context.Context, ns, model, path string, req registry.CreateVersionRequest, progress func(done, total int64)) (registry.Version, error) {
	sum, size, err := FileSHA256(path)
	if err != nil {
		return registry.Version{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return registry.Version{}, fmt.Errorf("push: %w", err)
	}
	defer f.Close()
	if progress == nil {
		progress = func(int64, int64) {}
	}

	up, err := c.StartUpload(ctx, ns)
	if err != nil {
		return registry.Version{}, fmt.Errorf("push: start upload: %w", err)
	}
	if err := c.uploadAll(ctx, ns, up.ID, f, size, progress); err != nil {
		c.cancelQuietly(ctx, ns, up.ID)
		return registry.Version{}, fmt.Errorf("push: %w", err)
	}
	if _, err := c.FinishUpload(ctx, ns, up.ID, sum); err != nil {
		c.cancelQuietly(ctx, ns, up.ID)
		return registry.Version{}, fmt.Errorf("push: finish upload: %w", err)
	}
	req.Namespace, req.Model, req.SHA256 = ns, model, sum
	if req.Source == "" {
		req.Source = "push"
	}
	v, err := c.CreateVersion(ctx, req)
	if err != nil {
		return registry.Version{}, fmt.Errorf("push: create version: %w", err)
	}
	return v, nil
}

// uploadAll sends f in chunks, resuming from the server's offset after failures.
func (c *Client) uploadAll(ctx context.Context, ns, id string, f io.ReaderAt, size int64, progress func(done, total int64)) error {
	buf := make([]byte, min(c.chunkSize, max(size, 1)))
	var offset int64
	failures := 0
	progress(0, size)
	for offset < size {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-offset)], offset)
		if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size-offset) {
			return fmt.Errorf("read file at %d: %w", offset, err)
		}
		next, err := c.UploadChunk(ctx, ns, id, offset, buf[:n])
		if err == nil {
			offset, failures = next, 0
			progress(offset, size)
			continue
		}
		failures++
		if !retryable(ctx, err) || failures > c.retries {
			return fmt.Errorf("upload chunk at offset %d: %w", offset, err)
		}
		if err := sleepCtx(ctx, c.retryDelay<<(failures-1)); err != nil {
			return err
		}
		if next < 0 {
			if next, err = c.UploadOffset(ctx, ns, id); err != nil {
				if !retryable(ctx, err) {
					return fmt.Errorf("upload status: %w", err)
				}
				continue // retry the same chunk; the failure counter bounds this
			}
		}
		if next > size {
			return fmt.Errorf("server holds %d bytes of a %d byte file", next, size)
		}
		offset = next
		progress(offset, size)
	}
	return nil
}

// retryable reports whether a failed request may succeed when repeated.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusConflict, http.StatusRequestTimeout, http.StatusTooManyRequests:
			return true
		}
		return ae.Status >= 500
	}
	return true // transport errors: the connection dropped, the server restarted
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// cancelQuietly discards an upload after a failure, even if ctx was canceled.
func (c *Client) cancelQuietly(ctx context.Context, ns, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = c.CancelUpload(ctx, ns, id) // best effort: the server expires it anyway
}
