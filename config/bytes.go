package config

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

var byteUnits = []struct {
	suffix string
	mult   float64
}{
	// Longest suffixes first, so "MiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"B", 1},
}

// ParseBytes reads a byte size: "2GiB", "512MB", "1.5G", "1048576", or a
// percentage of total ("50%"). "0", "none" and "unlimited" mean 0 (no limit).
func ParseBytes(s string, total int64) (int64, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "", "0", "none", "unlimited":
		return 0, nil
	}
	if p, ok := strings.CutSuffix(t, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f <= 0 || f > 100 || math.IsNaN(f) {
			return 0, fmt.Errorf("%q: a percentage must be in (0, 100]", s)
		}
		if n := int64(f / 100 * float64(total)); n > 0 {
			return n, nil
		}
		return 0, fmt.Errorf("%q of %d bytes is less than one byte", s, total)
	}
	mult := 1.0
	num := t
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q: not a size (e.g. 2GiB, 512MB, 50%%, or 0 for unlimited)", s)
	}
	if n := int64(f * mult); n > 0 || f == 0 {
		return n, nil
	}
	// "0.1" would round to 0, which means unlimited: not what was asked.
	return 0, fmt.Errorf("%q: less than one byte; write 0 for unlimited", s)
}

// FormatBytes writes n in binary units, with one decimal from KiB on: "512 B",
// "1.5 GiB". It is the one byte formatter: server messages and the CLI use it.
func FormatBytes(n int64) string {
	const unit = 1 << 10
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit { // at most EiB: an int64 is below 8 EiB
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// MachineMemory is the memory this process may use: the cgroup v2 limit where
// one is set, else the machine's total (MemTotal).
func MachineMemory() (int64, error) {
	total, err := memTotal("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < total {
			return n, nil
		}
	}
	return total, nil
}

func memTotal(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read machine memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				break
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("read machine memory: no MemTotal in " + path)
}

// MemoryBudgetBytes resolves MemoryBudget against the machine's memory.
func (c *Config) MemoryBudgetBytes() (int64, error) { return ofMachine("memoryBudget", c.MemoryBudget) }

// ofMachine parses setting key's size v, a percentage of the machine's memory
// when it ends in "%".
func ofMachine(key, v string) (int64, error) {
	if !strings.HasSuffix(strings.TrimSpace(v), "%") {
		return ParseBytes(v, 0)
	}
	total, err := MachineMemory()
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w; give a size instead", key, v, err)
	}
	return ParseBytes(v, total)
}

// MinTransferRateBytes is MinTransferRate in bytes per second (0: none).
func (c *Config) MinTransferRateBytes() (int64, error) { return ParseBytes(c.MinTransferRate, 0) }

// MaxInflightBytesValue resolves MaxInflightBytes against the machine's memory
// (0: unlimited).
func (c *Config) MaxInflightBytesValue() (int64, error) {
	return ofMachine("maxInflightBytes", c.MaxInflightBytes)
}
