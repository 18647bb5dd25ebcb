//go:build !cgo || !linux

package memstat

// NativeInUse is unavailable without cgo on Linux.
func NativeInUse() (int64, bool) { return 0, false }

// Trim does nothing without cgo on Linux.
func Trim() {}
