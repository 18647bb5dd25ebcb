//go:build cgo && linux

package memstat

/*
#include <malloc.h>

static long long nimbus_native_in_use(void) {
	struct mallinfo2 mi = mallinfo2();
	return (long long)(mi.uordblks + mi.hblkhd);
}

static void nimbus_trim(void) { malloc_trim(0); }
*/
import "C"

// NativeInUse is the bytes the C allocator (glibc malloc) has handed out and not
// had back: small chunks plus mmapped large ones. It does not move when freed
// pages are reused, so a delta around a load is what the load kept.
func NativeInUse() (int64, bool) { return int64(C.nimbus_native_in_use()), true }

// Trim returns the C allocator's free memory to the system (malloc_trim):
// without it, memory freed by closed sessions stays in the process.
func Trim() { C.nimbus_trim() }
