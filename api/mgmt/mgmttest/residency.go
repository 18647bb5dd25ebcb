package mgmttest

import (
	"context"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/residency"
)

// Residency is a stand-in for the serving layer's residency status: it answers
// from a fixed report, keeping the versions of the namespace and model asked
// for. Like the serving layer, it reports errs.NotFound for a model with no
// versions and an empty report for a namespace without any. Set Report before
// serving; it is not copied.
type Residency struct {
	Report residency.Report
}

var _ mgmt.Residency = (*Residency)(nil)

// Status implements mgmt.Residency.
func (f *Residency) Status(_ context.Context, ns, model string) (residency.Report, error) {
	out := residency.Report{Memory: f.Report.Memory, Versions: []residency.VersionStatus{}}
	for _, v := range f.Report.Versions {
		if v.Namespace == ns && (model == "" || v.Model == model) {
			out.Versions = append(out.Versions, v)
		}
	}
	if model != "" && len(out.Versions) == 0 {
		return residency.Report{}, errs.New(errs.NotFound, "model %q not found in namespace %q", model, ns)
	}
	return out, nil
}
