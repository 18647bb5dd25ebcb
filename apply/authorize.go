package apply

import (
	"slices"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

// authorize asks req.Authorize about the kind and namespace of every document, before
// anything is planned, fetched or changed: one document the caller may not
// touch refuses the whole request (403), naming each refused document. The
// documents that failed decoding or validation (invalid) are asked about too,
// so a request that reaches into a namespace it may not touch is answered 403
// whatever else is wrong with it.
func authorize(req spec.Request, docs, invalid []spec.Document) spec.Errors {
	if req.Authorize == nil {
		return nil
	}
	var denied spec.Errors
	verdicts := map[[2]string]error{}
	for _, d := range slices.Concat(docs, invalid) {
		k := [2]string{d.Object.GetKind(), d.Object.GetMeta().Namespace}
		err, seen := verdicts[k]
		if !seen {
			err = req.Authorize(k[0], k[1])
			verdicts[k] = err
		}
		if err != nil {
			denied = append(denied, d.Errorf("metadata.namespace", errs.PermissionDenied, "%s", errs.PublicMessage(err)))
		}
	}
	return denied.Sorted()
}
