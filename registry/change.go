package registry

// ChangeKind says what changed about a model.
type ChangeKind uint8

// Kinds of change a Registry reports.
const (
	VersionCreated ChangeKind = iota + 1
	VersionDeleted
	ModelDeleted
	AliasChanged
	ServingChanged
	ModelUpdated
)

// Change is one committed registry change. Version is 0 when the change is about
// the whole model.
type Change struct {
	Kind      ChangeKind
	Namespace string
	Model     string
	Version   int64
}

// OnChange registers fn to be called after every committed change, synchronously,
// in the goroutine that made it (so a caller that got an answer can rely on caches
// having been invalidated). fn must be quick and must not call back into Registry.
// Register observers before the Registry is used.
func (r *Registry) OnChange(fn func(Change)) {
	r.observers = append(r.observers, fn)
}

func (r *Registry) notify(c Change) {
	for _, fn := range r.observers {
		fn(c)
	}
}
