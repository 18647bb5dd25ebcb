package spec

import (
	"fmt"
	"strings"
)

// Bounds checked on the raw bytes, before yaml.v3 builds anything: yaml.v3
// builds a document's whole node tree (about 300 bytes per node) before any
// check can look at it, so 16 MiB of "[a,a,a,…" cost gigabytes and seconds.
const (
	maxDocBytes = 1 << 20 // bytes in one document
	// maxScanNodes bounds the nodes one document may build, counted by
	// scanYAML, which never counts fewer than yaml.v3 builds (and for real
	// resources counts 2 to 5 times as many).
	maxScanNodes   = maxDocNodes
	maxScanAliases = 10_000 // alias nodes (*name) in one document
	// maxScanDepth bounds nesting as scanYAML estimates it from indentation,
	// indicators and brackets: a quick refusal of deep documents, looser than
	// maxDocDepth, which measureNode enforces exactly after the parse.
	maxScanDepth = 4 * maxDocDepth
	// Across every document of one request.
	maxRequestNodes = 5 * maxDocNodes
	maxRequestDocs  = 10_000
)

// scanBudget is what a request's earlier files used of the request-wide bounds.
type scanBudget struct {
	nodes, docs int
}

// scanProblem is a bound a document (or the request) exceeds.
type scanProblem struct {
	line    int  // first line of the document
	request bool // a request-wide bound: stop decoding the request
	msg     string
}

// scanLimits are the bounds a scan checks; the fuzz test counts without them.
type scanLimits struct {
	docBytes, docNodes, docAliases, docDepth, requestNodes, requestDocs int
}

var defaultScanLimits = scanLimits{
	docBytes: maxDocBytes, docNodes: maxScanNodes, docAliases: maxScanAliases, docDepth: maxScanDepth,
	requestNodes: maxRequestNodes, requestDocs: maxRequestDocs,
}

// prescan checks data against the bounds, adding its documents and nodes to b.
// It allocates next to nothing and stops at the first bound exceeded.
func prescan(data string, b *scanBudget) *scanProblem {
	s := yamlScanner{lim: defaultScanLimits, budget: b}
	return s.scan(data)
}

// yamlScanner is a cheap, context-free look at YAML text. Its node count is an
// upper bound on the nodes yaml.v3 builds, whatever the text: every node
// yaml.v3 builds starts at a byte the scanner counts (a document marker, an
// indicator - ? : [ { , that may open a collection or stand for an empty
// value, or the first byte of a token after a separator), and the scanner
// ignores quoting, comments and block scalars, so text that is not structure
// can only add to the count. The same holds for aliases (every alias token is
// a "*" starting a token). The depth is an estimate: enough to refuse deep
// documents without parsing them, not a bound (brackets inside quoted text
// move it either way); yaml.v3 itself stops at 10,000 levels, and measureNode
// holds documents to maxDocDepth after the parse.
type yamlScanner struct {
	lim    scanLimits
	budget *scanBudget

	// The current document.
	docStart, docLine int
	nodes, aliases    int
	// Totals, for the fuzz test.
	totalNodes, totalAliases, maxDepth int
}

// indentEntry is a line that may contain the lines indented below it.
type indentEntry struct {
	indent, depth int
	// keyLine: a line with a key and no "- " in front; a block sequence may
	// follow it at the same indentation and still be inside it.
	keyLine bool
}

func (s *yamlScanner) scan(data string) *scanProblem {
	if p := s.startDoc(0, 1); p != nil {
		return p
	}
	var stackBuf [32]indentEntry
	stack := stackBuf[:0]
	flow, flowBase := 0, 0
	for i, line := 0, 1; i <= len(data); line++ {
		// The line is data[i:j] and the next starts at next; look no further
		// than the document may reach.
		limit := min(len(data), s.docStart+s.lim.docBytes+1)
		j, next := lineEnd(data, i, limit)
		ln := data[i:j]
		if isDocMarker(ln) {
			if p := s.startDoc(i, line); p != nil {
				return p
			}
			stack, flow = stack[:0], 0
		}

		indent := 0
		for indent < len(ln) && ln[indent] == ' ' {
			indent++
		}
		rest := ln[indent:]
		blank := len(strings.TrimSpace(rest)) == 0 || rest[0] == '#'
		dash := len(rest) > 0 && rest[0] == '-' && (len(rest) == 1 || isYAMLSpace(rest[1]))
		base := flowBase
		if flow == 0 && !blank {
			for len(stack) > 0 {
				top := stack[len(stack)-1]
				if top.indent < indent || (top.indent == indent && dash && top.keyLine) {
					break
				}
				stack = stack[:len(stack)-1]
			}
			base = 0
			if len(stack) > 0 {
				base = stack[len(stack)-1].depth
			}
		}
		inFlow := flow > 0
		depth, hasKey, deepest := base+1, false, 0
		prev := byte('\n')
		for k := 0; k < len(ln); k++ {
			c := ln[k]
			next := byte('\n')
			if k+1 < len(ln) {
				next = ln[k+1]
			}
			if isYAMLSpace(c) {
				prev = c
				continue
			}
			if startsToken(prev) {
				s.nodes++ // a scalar, an alias, a tag or anchor, a quoted string, …
				if c == '*' {
					s.aliases++
				}
			}
			switch c {
			case '-', '?':
				if isYAMLSpace(next) {
					s.nodes += 3 // a collection, and an empty key and value
					if flow == 0 {
						depth++
					}
				}
			case ':':
				s.nodes += 3 // a mapping, and an empty key and value
				if flow == 0 && isYAMLSpace(next) {
					depth++
					hasKey = true
				}
			case '[', '{':
				s.nodes += 2 // the collection, and an empty value
				flow++
			case ']', '}':
				if flow > 0 {
					flow--
				}
			case ',':
				s.nodes++ // an empty value of the next entry
			}
			deepest = max(deepest, depth+flow)
			prev = c
			if s.nodes > s.lim.docNodes || s.aliases > s.lim.docAliases || deepest > s.lim.docDepth ||
				s.budget.nodes+s.nodes > s.lim.requestNodes {
				return s.checkDoc(deepest) // refused within the line: no need to read the rest
			}
		}
		s.maxDepth = max(s.maxDepth, deepest)
		if j-s.docStart > s.lim.docBytes {
			return s.docProblem("document too large: more than %d bytes", s.lim.docBytes)
		}
		switch {
		case !inFlow && flow > 0:
			flowBase = depth // a flow collection goes on below: its lines nest from here
		case !inFlow && !blank:
			stack = append(stack, indentEntry{indent: indent, depth: depth, keyLine: hasKey && !dash})
		}
		i = next
	}
	return s.endDoc()
}

// lineEnd finds the end j of the line starting at i, looking no further than
// limit, and where the next line starts. A line ends at any break yaml.v3
// knows: LF, CR, CR LF, and, as YAML 1.1 has them, NEL (U+0085), LS (U+2028)
// and PS (U+2029). Seeing fewer breaks than yaml.v3 would hide the documents
// that start after them: "a: b<LS>---<LS>c: d" is two documents to yaml.v3.
// Without a break before limit, j is limit and the next line starts after it.
func lineEnd(data string, i, limit int) (j, next int) {
	for j = i; j < limit; j++ {
		switch data[j] {
		case '\n':
			return j, j + 1
		case '\r':
			if j+1 < len(data) && data[j+1] == '\n' {
				return j, j + 2
			}
			return j, j + 1
		case 0xC2: // NEL is C2 85
			if j+1 < len(data) && data[j+1] == 0x85 {
				return j, j + 2
			}
		case 0xE2: // LS and PS are E2 80 A8 and E2 80 A9
			if j+2 < len(data) && data[j+1] == 0x80 && (data[j+2] == 0xA8 || data[j+2] == 0xA9) {
				return j, j + 3
			}
		}
	}
	return max(i, limit), max(i, limit) + 1
}

// startDoc ends the current document (if any) and starts one at offset and
// line.
func (s *yamlScanner) startDoc(offset, line int) *scanProblem {
	if offset > 0 {
		if p := s.endDoc(); p != nil {
			return p
		}
	}
	s.docStart, s.docLine, s.nodes, s.aliases = offset, line, 2, 0 // the document, and an empty value
	s.budget.docs++
	if s.budget.docs > s.lim.requestDocs {
		return &scanProblem{line: line, request: true, msg: fmt.Sprintf("too many YAML documents in one request: more than %d", s.lim.requestDocs)}
	}
	return nil
}

func (s *yamlScanner) endDoc() *scanProblem {
	s.budget.nodes += s.nodes
	s.totalNodes += s.nodes
	s.totalAliases += s.aliases
	s.nodes, s.aliases = 0, 0
	return nil
}

// checkDoc checks the current document's counts, and the request's.
func (s *yamlScanner) checkDoc(depth int) *scanProblem {
	switch {
	case s.nodes > s.lim.docNodes:
		return s.docProblem("document too large: more than %d YAML nodes (counted before parsing)", s.lim.docNodes)
	case s.aliases > s.lim.docAliases:
		return s.docProblem("too many YAML aliases: more than %d", s.lim.docAliases)
	case depth > s.lim.docDepth:
		return s.docProblem("document nested too deeply: more than %d levels", maxDocDepth)
	case s.budget.nodes+s.nodes > s.lim.requestNodes:
		return &scanProblem{line: s.docLine, request: true,
			msg: fmt.Sprintf("request too large: more than %d YAML nodes in all its documents (counted before parsing)", s.lim.requestNodes)}
	}
	return nil
}

func (s *yamlScanner) docProblem(format string, args ...any) *scanProblem {
	return &scanProblem{line: s.docLine, msg: fmt.Sprintf(format, args...)}
}

// isDocMarker reports whether a line is "---" or "..." on its own or followed
// by a space: the start or end of a document.
func isDocMarker(ln string) bool {
	if len(ln) < 3 || (ln[:3] != "---" && ln[:3] != "...") {
		return false
	}
	return len(ln) == 3 || isYAMLSpace(ln[3])
}

func isYAMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// startsToken reports whether a byte after prev may begin a YAML token: after
// white space, a line break (the last byte of NEL, LS and PS too, which
// yaml.v3 takes as breaks), an indicator, or a byte order mark.
func startsToken(prev byte) bool {
	switch prev {
	case ' ', '\t', '\r', '\n', '[', ']', '{', '}', ',', ':', '?', '-', 0x85, 0xA8, 0xA9, 0xBF:
		return true
	}
	return false
}
