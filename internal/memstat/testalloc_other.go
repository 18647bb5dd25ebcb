//go:build !cgo || !linux

package memstat

import "unsafe"

// Stubs for this package's tests, which skip without C allocator statistics.
func cmalloc(int) unsafe.Pointer { return nil }
func cfree(unsafe.Pointer)       {}
