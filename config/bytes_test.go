package config

import (
	"math"
	"testing"
	"time"
)

func TestParseBytes(t *testing.T) {
	cases := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"unlimited", 0}, {"none", 0}, {"", 0},
		{"1048576", 1 << 20}, {"2GiB", 2 << 30}, {"512MB", 512e6}, {"1.5G", 1.5e9},
		{"64 MiB", 64 << 20}, {"10Ki", 10 << 10}, {"100B", 100},
		{"50%", 500}, {"100%", 1000}, {"12.5%", 125},
	}
	for _, c := range cases {
		got, err := ParseBytes(c.in, 1000)
		if err != nil || got != c.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"lots", "-1GiB", "0%", "101%", "NaN", "1e400", "GiB", "5 parsecs", "0.1", "0.5B", "0.01%"} {
		if _, err := ParseBytes(bad, 1000); err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3 << 30: "3.0 GiB",
		5 << 50: "5.0 PiB", 1 << 60: "1.0 EiB", math.MaxInt64: "8.0 EiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestMachineMemory(t *testing.T) {
	n, err := MachineMemory()
	if err != nil {
		t.Fatal(err)
	}
	if n < 64<<20 {
		t.Fatalf("machine memory %d looks wrong", n)
	}
	c := Default()
	b, err := c.MemoryBudgetBytes()
	if err != nil || b != n/2 {
		t.Fatalf("default budget = %d, %v; want half of %d", b, err, n)
	}
}

func TestMemoryBudgetValidated(t *testing.T) {
	c := Default()
	c.MemoryBudget = "lots"
	if err := c.Validate(); err == nil {
		t.Fatal("Validate accepted memoryBudget lots")
	}
}

func TestTransferLimitsResolve(t *testing.T) {
	c := Default()
	if n, err := c.MaxInflightBytesValue(); err != nil || n != 1<<30 {
		t.Errorf("default maxInflightBytes = %d, %v; want 1 GiB", n, err)
	}
	if n, err := c.MinTransferRateBytes(); err != nil || n != 64<<10 {
		t.Errorf("default minTransferRate = %d, %v; want 64 KiB/s", n, err)
	}
	env := map[string]string{"NIMBUS_MAX_INFLIGHT_BYTES": "0", "NIMBUS_READ_TIMEOUT": "2m", "NIMBUS_MIN_TRANSFER_RATE": "1MiB"}
	if err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.MaxInflightBytesValue(); n != 0 || c.ReadTimeout != 2*time.Minute || c.Validate() != nil {
		t.Errorf("from the environment: maxInflightBytes %d, readTimeout %s, validate %v", n, c.ReadTimeout, c.Validate())
	}
	if n, _ := c.MinTransferRateBytes(); n != 1<<20 {
		t.Errorf("minTransferRate from the environment = %d", n)
	}
}
