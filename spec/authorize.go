package spec

import (
	"github.com/nimbus-ai/nimbus/internal/errs"
)

// authorize asks req.Authorize about the namespace of every document, before
// anything is planned, fetched or changed: one document the caller may not
// touch refuses the whole request (403), naming each refused document.
func authorize(req Request, docs []Document) Errors {
	if req.Authorize == nil {
		return nil
	}
	var denied Errors
	verdicts := map[string]error{}
	for _, d := range docs {
		ns := d.Object.GetMeta().Namespace
		err, seen := verdicts[ns]
		if !seen {
			err = req.Authorize(ns)
			verdicts[ns] = err
		}
		if err != nil {
			denied = append(denied, d.errorf("metadata.namespace", errs.PermissionDenied, "%s", errs.PublicMessage(err)))
		}
	}
	return denied.sorted()
}
