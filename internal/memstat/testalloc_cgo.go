//go:build cgo && linux

// Helpers for this package's tests: cgo cannot appear in _test.go files.

package memstat

import "unsafe"

/*
#include <stdlib.h>
#include <string.h>
static void *nimbus_test_alloc(size_t n) { void *p = malloc(n); memset(p, 1, n); return p; }
*/
import "C"

func cmalloc(n int) unsafe.Pointer { return C.nimbus_test_alloc(C.size_t(n)) }
func cfree(p unsafe.Pointer)       { C.free(p) }
