//go:build cgo && linux

package bench

/*
#include <malloc.h>
static void nimbus_bench_trim(void) { malloc_trim(0); }
*/
import "C"

// mallocTrim asks glibc malloc to return its free memory to the system, as the
// server does after an unload; it reports whether it could.
func mallocTrim() bool {
	C.nimbus_bench_trim()
	return true
}
