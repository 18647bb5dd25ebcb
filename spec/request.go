package spec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// File is one named input of an apply.
type File struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// Request is one apply (or delete) call.
type Request struct {
	Files []File `json:"files"`
	// Namespace is given to documents that name none (default "default").
	Namespace string `json:"namespace,omitempty"`
	DryRun    bool   `json:"dryRun,omitempty"`
	// Actor and Source are recorded in the audit log (set by the server, not the body).
	Actor  string `json:"-"`
	Source string `json:"-"`
	// Authorize, when set, is asked about every document's kind and
	// namespace before anything else happens; an error refuses the whole
	// request (set by the server from the caller's token). kind "" asks
	// whether the caller may write in the namespace at all; an AdminOnly
	// kind needs an admin of it.
	Authorize func(kind, namespace string) error `json:"-"`
	// AppliedBy is the caller's identity as a GitSource applied by this
	// request will sync (a token id; set by the server).
	AppliedBy string `json:"-"`
}

// Actions of a Result.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
	ActionDeleted    = "deleted"
)

// Result is what happened (or, on a dry run, would happen) to one resource.
type Result struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Action     string `json:"action"`
	Generation int64  `json:"generation,omitempty"`
	Diff       string `json:"diff,omitempty"`
	// Fetch lists the source URIs (credentials dropped) of the new artifacts
	// this apply fetched; on a dry run, those it would fetch.
	Fetch []string `json:"fetch,omitempty"`
}

// Response is the outcome of an apply or delete.
type Response struct {
	DryRun  bool     `json:"dryRun"`
	Results []Result `json:"results"`
}

// Changed reports whether any resource was (or on a dry run would be)
// created, changed or deleted.
func (r *Response) Changed() bool {
	for _, res := range r.Results {
		if res.Action != ActionUnchanged {
			return true
		}
	}
	return false
}

// Errors is every problem an apply found; nothing was changed.
type Errors []FieldError

func (e Errors) Error() string {
	var b strings.Builder
	for i, fe := range e {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(fe.String())
	}
	return b.String()
}

// Sorted orders the errors by file and line, so they read top to bottom.
func (e Errors) Sorted() Errors {
	slices.SortStableFunc(e, func(a, b FieldError) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return a.Line - b.Line
	})
	return e
}

// Status is the HTTP status of the whole answer: 409 when a conflict is among
// the errors, 404 when every error is a missing reference, else 400.
func (e Errors) Status() int {
	notFound := len(e) > 0
	for _, fe := range e {
		if fe.Code == errs.PermissionDenied.String() {
			return errs.PermissionDenied.HTTPStatus()
		}
	}
	for _, fe := range e {
		switch fe.Code {
		case errs.Conflict.String(), errs.AlreadyExists.String():
			return errs.Conflict.HTTPStatus()
		case errs.NotFound.String():
		default:
			notFound = false
		}
	}
	if notFound {
		return errs.NotFound.HTTPStatus()
	}
	return errs.InvalidArgument.HTTPStatus()
}

// String renders "file:line: kind/name: field: message", leaving out empty parts.
// Without a file it names the resource ("inferenceservice/fraud") where it can.
func (fe FieldError) String() string {
	var parts []string
	switch {
	case fe.File != "" && fe.Line > 0:
		parts = append(parts, fe.File+":"+strconv.Itoa(fe.Line))
	case fe.File != "":
		parts = append(parts, fe.File)
	case fe.Name != "" && fe.Kind != "":
		parts = append(parts, strings.ToLower(fe.Kind)+"/"+fe.Name)
	case fe.Name != "":
		parts = append(parts, fe.Name)
	case fe.Line > 0:
		parts = append(parts, "line "+strconv.Itoa(fe.Line))
	}
	if fe.Field != "" {
		parts = append(parts, fe.Field)
	}
	msg := fe.Message
	if msg == "" {
		msg = fe.Code
	}
	if msg != "" {
		parts = append(parts, msg)
	}
	return strings.Join(parts, ": ")
}

// decodeAll decodes, defaults and statically validates every file, and refuses a
// resource declared twice.
func decodeAll(req Request) ([]Document, Errors) {
	docs, _, all := DecodeRequest(req)
	return docs, all
}

// DecodeRequest decodes, defaults and statically validates every file, and
// refuses a resource declared twice. It also returns the documents of a known
// kind that failed decoding or validation (defaulted: their namespace is
// known), so that they are authorized too.
func DecodeRequest(req Request) (docs, invalid []Document, all Errors) {
	ns := req.Namespace
	if ns == "" {
		ns = registry.DefaultNamespace
	}
	seen := map[string]Document{}
	budget := &scanBudget{}
	for _, f := range req.Files {
		ds, partial, fes, stop := decodeFile(f.Name, f.Content, budget)
		all = append(all, fes...)
		if stop {
			break // the request's bounds are spent: the rest is not even scanned
		}
		all = append(all, validatePartial(partial, ns)...)
		for _, d := range partial {
			invalid = append(invalid, d.Document)
		}
		for _, d := range ds {
			Default(d.Object, ns)
			if fes := Validate(d); len(fes) > 0 {
				all = append(all, fes...)
				invalid = append(invalid, d)
				continue
			}
			m := d.Object.GetMeta()
			key := d.Object.GetKind() + "/" + m.Namespace + "/" + m.Name
			if prev, dup := seen[key]; dup {
				all = append(all, d.Errorf("metadata.name", errs.InvalidArgument,
					"%s %s/%s is declared twice (also at %s:%d)", d.Object.GetKind(), m.Namespace, m.Name, prev.File, prev.Line))
				continue
			}
			seen[key] = d
			docs = append(docs, d)
		}
	}
	if len(all) == 0 && len(docs) == 0 {
		all = append(all, FieldError{Message: NoResources, Code: errs.InvalidArgument.String()})
	}
	return docs, invalid, all
}

// NoResources is the one error of an input that declares nothing.
const NoResources = "no resources found in the input"

// validatePartial validates documents that decoded with errors, keeping only
// problems of fields the decode errors did not already cover (a field left at
// zero because its value was refused is not "required" too). The documents are
// never applied.
func validatePartial(partial []partialDoc, ns string) []FieldError {
	var out []FieldError
	for _, d := range partial {
		// The object holding a refused field is suspect as a whole: a
		// misspelled "weigth" leaves "weight" unset on purpose of nobody.
		bad := make([]string, 0, len(d.errs))
		for _, fe := range d.errs {
			parent := fe.Field
			if i := strings.LastIndexAny(parent, ".["); i > 0 {
				parent = parent[:i]
			}
			bad = append(bad, parent)
		}
		Default(d.Object, ns)
		for _, fe := range Validate(d.Document) {
			if !overlaps(fe.Field, bad) {
				out = append(out, fe)
			}
		}
	}
	return out
}

// overlaps reports whether field is one of paths, inside one, or contains one.
func overlaps(field string, paths []string) bool {
	for _, p := range paths {
		if p == "" || field == p || strings.HasPrefix(field, p+".") || strings.HasPrefix(field, p+"[") ||
			strings.HasPrefix(p, field+".") || strings.HasPrefix(p, field+"[") || field == "" {
			return true
		}
	}
	return false
}

// Errorf makes a FieldError at field of d, with the field's line when known.
func (d Document) Errorf(field string, kind errs.Kind, format string, args ...any) FieldError {
	m := d.Object.GetMeta()
	return FieldError{
		File: d.File, Line: d.lineOf(field), Kind: d.Object.GetKind(), Name: m.Name,
		Field: field, Message: fmt.Sprintf(format, args...), Code: kind.String(),
	}
}

// lineOf is the line of field, else of its nearest parent, else of the document.
func (d Document) lineOf(field string) int {
	for p := field; p != ""; {
		if l, ok := d.Lines[p]; ok && l > 0 {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return d.Line
}

// DeleteRequest deletes one resource by name.
type DeleteRequest struct {
	Kind, Namespace, Name string
	DryRun                bool
	Actor, Source         string
}
