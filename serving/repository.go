package serving

import (
	"context"
	"strconv"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// The OIP model repository extension: which versions exist and their state,
// load and unload on request.

// RepositoryIndex lists every version in a namespace with its state.
func (m *Manager) RepositoryIndex(ctx context.Context, ns string, readyOnly bool) ([]RepositoryEntry, error) {
	var out []RepositoryEntry
	opt := registry.ListOptions{Limit: registry.MaxPageSize}
	for {
		page, err := m.reg.ListModels(ctx, ns, opt)
		if err != nil {
			return nil, err
		}
		for _, mod := range page.Items {
			vs, err := m.reg.ListVersions(ctx, ns, mod.Name)
			if err != nil {
				return nil, err
			}
			for _, v := range vs {
				e := m.entryState(ns, mod.Name, v.Version)
				if readyOnly && e.State != StateReady {
					continue
				}
				out = append(out, e)
			}
		}
		if page.Next == "" {
			return out, nil
		}
		opt.After = page.Next
	}
}

func (m *Manager) entryState(ns, model string, version int64) RepositoryEntry {
	e := RepositoryEntry{Name: model, Version: strconv.FormatInt(version, 10)}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.unloaded[modelKey{ns, model}] {
		e.State, e.Reason = StateUnavailable, "unloaded"
		return e
	}
	inst, ok := m.loaded[versionKey{ns, model, version}]
	if !ok {
		e.State, e.Reason = StateReady, "not resident; loads on first request"
		return e
	}
	select {
	case <-inst.ready:
		if inst.err != nil {
			e.State, e.Reason = StateUnavailable, errs.PublicMessage(inst.err)
		} else {
			e.State = StateReady
		}
	default:
		e.State = StateLoading
	}
	return e
}

// LoadModel makes a model available again and loads its default version now.
func (m *Manager) LoadModel(ctx context.Context, ns, model string) error {
	v, err := m.resolve(ctx, ns, model, "")
	if err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.unloaded, modelKey{ns, model})
	if inst, ok := m.loaded[versionKey{ns, model, v.Version}]; ok && inst.err != nil {
		m.dropLocked(inst) // an explicit load retries at once
	}
	m.mu.Unlock()
	inst, _, err := m.acquire(ctx, v, false)
	if err != nil {
		return err
	}
	inst.release()
	return nil
}

// UnloadModel frees every loaded version of a model and refuses requests until
// LoadModel. In-flight requests finish first.
func (m *Manager) UnloadModel(ctx context.Context, ns, model string) error {
	if _, err := m.reg.GetModel(ctx, ns, model); err != nil {
		return err
	}
	m.mu.Lock()
	m.unloaded[modelKey{ns, model}] = true
	victims := m.detachLocked(func(k versionKey) bool { return k.ns == ns && k.model == model })
	m.mu.Unlock()
	m.closeAll(victims)
	return nil
}
