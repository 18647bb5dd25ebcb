package serving

import "log/slog"

// UnloadIdleAround is UnloadIdle with between run after its scan for idle
// versions and before it unloads them: the window in which a request may use a
// version the scan found idle.
func (m *Manager) UnloadIdleAround(between func()) int {
	now := m.opts.Now()
	idle := m.idleCandidates(now)
	between()
	return m.unloadIdle(now, idle)
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
