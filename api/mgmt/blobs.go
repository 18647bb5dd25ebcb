package mgmt

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// Headers of the blob API.
const (
	// HeaderContentSHA256 carries the expected digest of a posted blob.
	HeaderContentSHA256 = "Nimbus-Content-SHA256"
	// HeaderUploadOffset is where a chunk starts (request) or where the upload
	// now ends (response).
	HeaderUploadOffset = "Upload-Offset"
)

// UploadStatus is the body of the resumable upload endpoints.
type UploadStatus struct {
	ID     string `json:"id"`
	Offset int64  `json:"offset"`
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// wantDigest returns the optional expected digest from the header or ?sha256=.
func wantDigest(r *http.Request, required bool) (string, error) {
	want := r.Header.Get(HeaderContentSHA256)
	if q := r.URL.Query().Get("sha256"); q != "" {
		want = q
	}
	switch {
	case want == "" && required:
		return "", errs.New(errs.InvalidArgument, "sha256 query parameter is required to finish an upload").WithField("sha256")
	case want != "" && !sha256RE.MatchString(want):
		return "", errs.New(errs.InvalidArgument, "sha256 %q is not 64 lowercase hex digits", want).WithField("sha256")
	}
	return want, nil
}

func (a *api) postBlob(w http.ResponseWriter, r *http.Request) error {
	want, err := wantDigest(r, false)
	if err != nil {
		return err
	}
	if r.ContentLength > a.opts.MaxBlobBytes {
		return errs.New(errs.TooLarge, "blob is larger than %d bytes", a.opts.MaxBlobBytes)
	}
	body := http.MaxBytesReader(w, r.Body, a.opts.MaxBlobBytes)
	info, err := a.reg.PutBlob(r.Context(), body, want)
	if err != nil {
		return fmt.Errorf("put blob: %w", err)
	}
	if err := a.recordUpload(r, info, "upload"); err != nil {
		return fmt.Errorf("put blob: %w", err)
	}
	a.log.InfoContext(r.Context(), "blob stored", "sha256", info.SHA256, "size", info.Size)
	writeJSON(w, http.StatusCreated, info)
	return nil
}

// recordUpload audits a stored blob: who uploaded which sha256, how many bytes.
// Blob files are not transactional, so the event follows the store; if it
// cannot be written the upload fails, and the unreferenced blob is left to GC.
func (a *api) recordUpload(r *http.Request, info registry.BlobInfo, how string) error {
	if a.opts.Audit == nil {
		return nil
	}
	actor, source := audit.OriginOf(r.Context())
	_, err := a.opts.Audit.AppendEvent(context.WithoutCancel(r.Context()), audit.Event{
		Actor: actor, Source: source, Action: audit.ActionCreate, Kind: "Blob",
		Namespace: r.PathValue("ns"), Name: info.SHA256,
		Summary: fmt.Sprintf("%s of %d bytes", how, info.Size),
	})
	if err != nil {
		return fmt.Errorf("record audit event: %w", err)
	}
	return nil
}

func uploadLocation(ns, id string) string {
	return "/api/v1/namespaces/" + ns + "/blobs/uploads/" + id
}

func writeUploadStatus(w http.ResponseWriter, status int, ns, id string, offset int64) {
	w.Header().Set("Location", uploadLocation(ns, id))
	w.Header().Set(HeaderUploadOffset, strconv.FormatInt(offset, 10))
	writeJSON(w, status, UploadStatus{ID: id, Offset: offset})
}

func (a *api) startUpload(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("ns")
	id, err := a.uploads.start(ns)
	if err != nil {
		return fmt.Errorf("start upload: %w", err)
	}
	writeUploadStatus(w, http.StatusAccepted, ns, id, 0)
	return nil
}

// uploadStatus answers GET and HEAD (ServeMux routes HEAD to GET patterns).
func (a *api) uploadStatus(w http.ResponseWriter, r *http.Request) error {
	ns, id := r.PathValue("ns"), r.PathValue("id")
	off, err := a.uploads.offset(ns, id)
	if err != nil {
		return fmt.Errorf("upload status: %w", err)
	}
	if r.Method == http.MethodHead {
		w.Header().Set(HeaderUploadOffset, strconv.FormatInt(off, 10))
		w.Header().Set("Location", uploadLocation(ns, id))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	writeUploadStatus(w, http.StatusOK, ns, id, off)
	return nil
}

func (a *api) uploadChunk(w http.ResponseWriter, r *http.Request) error {
	ns, id := r.PathValue("ns"), r.PathValue("id")
	h := r.Header.Get(HeaderUploadOffset)
	offset, err := strconv.ParseInt(h, 10, 64)
	if err != nil || offset < 0 {
		return errs.New(errs.InvalidArgument, "header %s=%q must be a non-negative number", HeaderUploadOffset, h).WithField(HeaderUploadOffset)
	}
	// Compared as a subtraction: offset+ContentLength overflows for a huge offset.
	if r.ContentLength > 0 && r.ContentLength > a.opts.MaxBlobBytes-offset {
		return errs.New(errs.TooLarge, "blob is larger than %d bytes", a.opts.MaxBlobBytes)
	}
	end, err := a.uploads.append(ns, id, offset, r.Body)
	if err != nil {
		var oe *offsetError
		if errors.As(err, &oe) {
			w.Header().Set(HeaderUploadOffset, strconv.FormatInt(oe.offset, 10))
		}
		return fmt.Errorf("upload chunk: %w", err)
	}
	writeUploadStatus(w, http.StatusAccepted, ns, id, end)
	return nil
}

func (a *api) finishUpload(w http.ResponseWriter, r *http.Request) error {
	ns, id := r.PathValue("ns"), r.PathValue("id")
	want, err := wantDigest(r, true)
	if err != nil {
		return err
	}
	var info registry.BlobInfo
	// The staged file is moved into the blob store, not copied: the bytes are
	// read once (to hash them) and written once (by the chunks).
	err = a.uploads.finish(ns, id, func(path string) error {
		var err error
		info, err = a.reg.AdoptBlob(r.Context(), path, want)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish upload: %w", err)
	}
	if err := a.recordUpload(r, info, "resumable upload "+id); err != nil {
		return fmt.Errorf("finish upload: %w", err)
	}
	a.log.InfoContext(r.Context(), "blob stored", "sha256", info.SHA256, "size", info.Size, "upload", id)
	writeJSON(w, http.StatusCreated, info)
	return nil
}

func (a *api) cancelUpload(w http.ResponseWriter, r *http.Request) error {
	if err := a.uploads.cancel(r.PathValue("ns"), r.PathValue("id")); err != nil {
		return fmt.Errorf("cancel upload: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
