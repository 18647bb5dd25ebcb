// Package memstat reads what this process holds in memory — its resident set and
// the C allocator's bytes in use (where ONNX Runtime keeps sessions) — and asks the
// C allocator to return freed memory to the system. The serving layer measures a
// model's cost with NativeInUse around its load and trims after unloading.
package memstat

import (
	"os"
	"strconv"
	"strings"
)

// RSS is the process's resident set size in bytes, or 0 where /proc is missing.
func RSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
