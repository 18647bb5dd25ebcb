package spec

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiff(t *testing.T) {
	lines := func(from, to int) string {
		var b strings.Builder
		for i := from; i <= to; i++ {
			fmt.Fprintf(&b, "%d\n", i)
		}
		return b.String()
	}
	for _, c := range []struct {
		name, from, to, want string
	}{
		{"equal", "a\nb\n", "a\nb\n", ""},
		{"both empty", "", "", ""},
		{"created", "", "a\nb\n", "--- from\n+++ to\n@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{"deleted", "a\n", "", "--- from\n+++ to\n@@ -1 +0,0 @@\n-a\n"},
		{"changed line", "a\nb\nc\n", "a\nB\nc\n", "--- from\n+++ to\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"},
		{
			"context is three lines", lines(1, 10), strings.Replace(lines(1, 10), "5\n", "five\n", 1),
			"--- from\n+++ to\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n",
		},
		{
			"distant changes make two hunks", lines(1, 20), strings.Replace(strings.Replace(lines(1, 20), "2\n", "two\n", 1), "19\n", "nineteen\n", 1),
			"--- from\n+++ to\n@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n@@ -16,5 +16,5 @@\n 16\n 17\n 18\n-19\n+nineteen\n 20\n",
		},
		{
			"near changes share a hunk", lines(1, 10), strings.Replace(strings.Replace(lines(1, 10), "2\n", "two\n", 1), "8\n", "eight\n", 1),
			"--- from\n+++ to\n@@ -1,10 +1,10 @@\n 1\n-2\n+two\n 3\n 4\n 5\n 6\n 7\n-8\n+eight\n 9\n 10\n",
		},
		{"insert at end", "a\n", "a\nb\n", "--- from\n+++ to\n@@ -1 +1,2 @@\n a\n+b\n"},
		{"insert at start", "b\n", "a\nb\n", "--- from\n+++ to\n@@ -1 +1,2 @@\n+a\n b\n"},
		{
			"missing final newline", "a\nb", "a\nb\n",
			"--- from\n+++ to\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Diff([]byte(c.from), []byte(c.to), "from", "to")
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got != "" {
				if patched, err := applyUnified(c.from, got); err != nil || patched != c.to {
					t.Errorf("patch gives %q, %v; want %q", patched, err, c.to)
				}
			}
		})
	}
}

// TestDiffLarge: past the comparison budget the middle is replaced whole, and
// the diff is still right.
func TestDiffLarge(t *testing.T) {
	var a, b strings.Builder
	for i := range 6000 {
		fmt.Fprintf(&a, "line %d\n", i)
		fmt.Fprintf(&b, "line %d\n", i*7%6000)
	}
	d := Diff([]byte(a.String()), []byte(b.String()), "a", "b")
	got, err := applyUnified(a.String(), d)
	if err != nil || got != b.String() {
		t.Fatalf("patch failed: %v", err)
	}
}

// applyUnified applies a unified diff made by Diff to from: a check that the
// hunks, their ranges and the no-newline markers say what they mean.
func applyUnified(from, patch string) (string, error) {
	a := splitLines(from)
	pl := splitLines(patch)
	if len(pl) < 3 || !strings.HasPrefix(pl[0], "--- ") || !strings.HasPrefix(pl[1], "+++ ") {
		return "", fmt.Errorf("bad header")
	}
	var out []string
	next := 0 // next line of a not yet copied
	for k := 2; k < len(pl); {
		h := strings.Fields(pl[k])
		if len(h) != 4 || h[0] != "@@" || h[3] != "@@" || h[1][0] != '-' || h[2][0] != '+' {
			return "", fmt.Errorf("bad hunk header %q", pl[k])
		}
		as, al, err := parseRange(h[1][1:])
		if err != nil {
			return "", err
		}
		_, bl, err := parseRange(h[2][1:])
		if err != nil {
			return "", err
		}
		start := as - 1 // 0-based first line of the hunk in a; an empty range names the line before
		if al == 0 {
			start = as
		}
		if start < next || start > len(a) {
			return "", fmt.Errorf("hunk %q out of order", pl[k])
		}
		out = append(out, a[next:start]...)
		next = start
		k++
		seenA, seenB := 0, 0
		for k < len(pl) && !strings.HasPrefix(pl[k], "@@") {
			op, line := pl[k][0], pl[k][1:]
			if k+1 < len(pl) && pl[k+1] == "\\ No newline at end of file\n" {
				line = strings.TrimSuffix(line, "\n")
				k++
			}
			k++
			switch op {
			case ' ', '-':
				if next >= len(a) || a[next] != line {
					return "", fmt.Errorf("line %d of from is not %q", next+1, line)
				}
				next++
				seenA++
				if op == ' ' {
					out = append(out, line)
					seenB++
				}
			case '+':
				out = append(out, line)
				seenB++
			default:
				return "", fmt.Errorf("bad line %q", line)
			}
		}
		if seenA != al || seenB != bl {
			return "", fmt.Errorf("hunk has %d,%d lines; its header says %d,%d", seenA, seenB, al, bl)
		}
	}
	out = append(out, a[next:]...)
	return strings.Join(out, ""), nil
}

func parseRange(s string) (start, n int, err error) {
	a, b, ok := strings.Cut(s, ",")
	if start, err = strconv.Atoi(a); err != nil {
		return 0, 0, err
	}
	if !ok {
		return start, 1, nil
	}
	n, err = strconv.Atoi(b)
	return start, n, err
}
