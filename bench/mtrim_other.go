//go:build !cgo || !linux

package bench

// mallocTrim is unavailable without cgo on Linux.
func mallocTrim() bool { return false }
