package spec

import (
	"fmt"
	"strings"
)

const (
	diffContext = 3 // lines of context around each change, as diff -u
	// maxDiffCells bounds the comparison table (the lines left once a common
	// head and tail are set aside, multiplied): 4M cells of 2 bytes. Past it the
	// differing middle is shown as one replacement, which is still a correct diff.
	maxDiffCells = 4 << 20
)

// Diff returns the unified diff (diff -u, 3 lines of context) that turns from
// into to, with "--- fromName" and "+++ toName" headers; "" when they are
// equal. A text not ending in a newline is marked "\ No newline at end of
// file", as GNU diff does. Inputs too large to compare line by line are shown
// as their differing middle replaced whole.
func Diff(from, to []byte, fromName, toName string) string {
	if string(from) == string(to) {
		return ""
	}
	a, b := splitLines(string(from)), splitLines(string(to))
	ops := diffOps(a, b)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", fromName, toName)
	for _, h := range hunks(ops) {
		writeHunk(&out, h, a, b)
	}
	return out.String()
}

// splitLines splits s into lines, each keeping its "\n" (the last one may lack
// it), so that a missing final newline is a difference too.
func splitLines(s string) []string {
	var lines []string
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

// diffOp is one line of the edit script: kept (a[i] == b[j]), deleted (a[i])
// or inserted (b[j]).
type diffOp struct {
	kind byte // ' ', '-', '+'
	i, j int  // indexes in a and b; for '-' j is where b stands, for '+' i where a stands
}

// diffOps is an edit script from a to b with the fewest changed lines (a
// longest common subsequence), but only past a common head and tail, and with a
// whole replacement where the middle is too large to compare.
func diffOps(a, b []string) []diffOp {
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	var ops []diffOp
	for k := range head {
		ops = append(ops, diffOp{' ', k, k})
	}
	am, bm := a[head:len(a)-tail], b[head:len(b)-tail]
	if len(am)*len(bm) <= maxDiffCells {
		ops = append(ops, lcsOps(am, bm, head)...)
	} else {
		for k := range am {
			ops = append(ops, diffOp{'-', head + k, head})
		}
		for k := range bm {
			ops = append(ops, diffOp{'+', head + len(am), head + k})
		}
	}
	for k := range tail {
		ops = append(ops, diffOp{' ', len(a) - tail + k, len(b) - tail + k})
	}
	return ops
}

// lcsOps is the classic dynamic programme: table[i][j] is the length of the
// longest common subsequence of a[i:] and b[j:]. len(a)*len(b) <= maxDiffCells
// keeps min(len(a), len(b)), and so every entry, at most 2048: uint16 is enough.
// Deletions come before insertions within a change, as diff -u shows them.
func lcsOps(a, b []string, off int) []diffOp {
	n, m := len(a), len(b)
	w := m + 1
	table := make([]uint16, (n+1)*w)
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			switch {
			case a[i] == b[j]:
				table[i*w+j] = table[(i+1)*w+j+1] + 1
			case table[(i+1)*w+j] >= table[i*w+j+1]:
				table[i*w+j] = table[(i+1)*w+j]
			default:
				table[i*w+j] = table[i*w+j+1]
			}
		}
	}
	ops := make([]diffOp, 0, n+m)
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, diffOp{' ', off + i, off + j})
			i, j = i+1, j+1
		case i < n && (j == m || table[(i+1)*w+j] >= table[i*w+j+1]):
			ops = append(ops, diffOp{'-', off + i, off + j})
			i++
		default:
			ops = append(ops, diffOp{'+', off + i, off + j})
			j++
		}
	}
	return ops
}

// hunks groups the edit script into runs of changes with up to diffContext
// kept lines around them; changes closer than twice that share a hunk.
func hunks(ops []diffOp) [][]diffOp {
	var out [][]diffOp
	start, end := -1, -1 // current hunk: ops[start:end]
	for k, op := range ops {
		if op.kind == ' ' {
			continue
		}
		lo, hi := max(0, k-diffContext), min(len(ops), k+1+diffContext)
		if start >= 0 && lo <= end {
			end = hi
			continue
		}
		if start >= 0 {
			out = append(out, ops[start:end])
		}
		start, end = lo, hi
	}
	if start >= 0 {
		out = append(out, ops[start:end])
	}
	return out
}

func writeHunk(out *strings.Builder, h []diffOp, a, b []string) {
	aStart, bStart, aLen, bLen := h[0].i, h[0].j, 0, 0
	for _, op := range h {
		if op.kind != '+' {
			aLen++
		}
		if op.kind != '-' {
			bLen++
		}
	}
	fmt.Fprintf(out, "@@ -%s +%s @@\n", hunkRange(aStart, aLen), hunkRange(bStart, bLen))
	for _, op := range h {
		var line string
		if op.kind == '+' {
			line = b[op.j]
		} else {
			line = a[op.i] // a kept line is the same in b
		}
		out.WriteByte(op.kind)
		out.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			out.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

// hunkRange is a hunk's "start,count" as GNU diff writes it: 1-based, ",1"
// left out, and an empty range starting at the line before it.
func hunkRange(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start)
	case 1:
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}
