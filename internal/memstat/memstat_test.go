package memstat

import (
	"os"
	"testing"
)

func TestRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("no /proc on this system")
	}
	if r := RSS(); r < 1<<20 {
		t.Fatalf("RSS = %d, want at least 1 MiB", r)
	}
}

func TestNativeInUseSeesCAllocations(t *testing.T) {
	before, ok := NativeInUse()
	if !ok {
		t.Skip("no C allocator statistics in this build")
	}
	const n = 8 << 20
	p := cmalloc(n)
	after, _ := NativeInUse()
	cfree(p)
	freed, _ := NativeInUse()
	Trim()
	if after-before < n {
		t.Fatalf("in use grew by %d after malloc(%d)", after-before, n)
	}
	if after-freed < n {
		t.Fatalf("in use fell by %d after free, want >= %d", after-freed, n)
	}
}
