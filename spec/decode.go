package spec

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

// Bounds on one document. Real resources are a few hundred nodes and a handful
// of levels deep; the bounds stop hostile input (a "billion laughs" of nested
// aliases, a list nested thousands deep) before any of it is walked twice.
const (
	maxDocNodes  = 100_000 // YAML nodes in a document, aliases expanded
	maxDocDepth  = 64      // nesting levels, aliases expanded
	maxDocErrors = 100     // errors reported for one document before giving up on it
)

// kindConstructors maps each known kind to a constructor of its empty object.
var kindConstructors = map[string]func() Object{
	KindModel:            func() Object { return new(Model) },
	KindInferenceService: func() Object { return new(InferenceService) },
	KindGitSource:        func() Object { return new(GitSource) },
	KindConnection:       func() Object { return new(Connection) },
	KindTrigger:          func() Object { return new(Trigger) },
}

// knownKinds lists the kinds for error messages.
func knownKinds() string { return strings.Join(slices.Sorted(maps.Keys(kindConstructors)), ", ") }

// ignoredPaths are written by the server: accepted in a document (so the output
// of `get -o yaml` can be applied again) and dropped. apiVersion and kind are
// read before the typed decode and filled in from there.
var ignoredPaths = map[string]bool{
	"apiVersion":                 true,
	"kind":                       true,
	"status":                     true,
	"metadata.generation":        true,
	"metadata.creationTimestamp": true,
	"metadata.managedBy":         true,
}

// Decode reads every YAML document in data (JSON is YAML too). Documents holding
// only comments are skipped. Each document must be a mapping with apiVersion
// nimbus.dev/v1 and a known kind; its fields are decoded by their JSON names,
// strictly: unknown fields, duplicate keys and values of the wrong type are
// errors. status, metadata.generation and metadata.creationTimestamp are written
// by the server and ignored here.
//
// Every problem is reported, each with file, line and field path. Only the
// documents that decoded without error are returned, each with the line of
// every decoded field, so later checks can point into the file too. Decode
// never applies defaults (see Default) nor checks values (see Validate).
//
// A YAML syntax error ends the file: the documents before it are still
// decoded and checked.
func Decode(file string, data []byte) ([]Document, []FieldError) {
	docs, _, all, _ := decodeFile(file, string(data), &scanBudget{})
	return docs, all
}

// decodeFile is Decode that also returns the documents that decoded with errors
// but whose kind was known (partial: fields in error left at zero), so apply can
// still report their other problems. Before yaml.v3 sees the text, prescan
// checks it against the size bounds (adding to budget, shared by a request's
// files); a file that exceeds one is refused whole, with one error, and stop
// says the request's own bounds are spent.
func decodeFile(file, data string, budget *scanBudget) (docs []Document, partial []partialDoc, all []FieldError, stop bool) {
	if p := prescan(data, budget); p != nil {
		return nil, nil, []FieldError{{File: file, Line: p.line, Message: p.msg, Code: errs.InvalidArgument.String()}}, p.request
	}
	dec := yaml.NewDecoder(strings.NewReader(data))
	for {
		var root yaml.Node
		err := decodeNode(dec, &root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			all = append(all, syntaxError(file, err))
			break
		}
		d, fes := decodeDocument(file, &root)
		all = append(all, fes...)
		switch {
		case d == nil:
		case len(fes) == 0:
			docs = append(docs, *d)
		default:
			partial = append(partial, partialDoc{*d, fes})
		}
	}
	return docs, partial, all, false
}

// partialDoc is a document that decoded with errors.
type partialDoc struct {
	Document
	errs []FieldError
}

// decodeNode parses the next document into n. yaml.v3 turns its own failures
// into errors; a panic from it on some input is reported as an error too rather
// than taking the server down.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: cannot parse the document: %v", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: did not find expected
// key") into a FieldError at that line. yaml.v3 leaves the line out when the
// problem is on the first line.
func syntaxError(file string, err error) FieldError {
	msg, line := err.Error(), 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil && n > 0 {
			line = n
		}
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return FieldError{File: file, Line: line, Message: "invalid YAML: " + msg, Code: errs.InvalidArgument.String()}
}

// docDecoder decodes one document into its Go object.
type docDecoder struct {
	file, kind, name string
	lines            map[string]int
	errs             []FieldError
	full             bool // maxDocErrors reached
}

func (d *docDecoder) errorf(line int, field, format string, args ...any) {
	if d.full {
		return
	}
	if len(d.errs) == maxDocErrors {
		d.full = true
		format, args = "too many errors; stopping after %d", []any{maxDocErrors}
	}
	d.errs = append(d.errs, FieldError{
		File: d.file, Line: line, Kind: d.kind, Name: d.name, Field: field,
		Message: fmt.Sprintf(format, args...), Code: errs.InvalidArgument.String(),
	})
}

// decodeDocument decodes one parsed document; nil when it is empty or has errors.
func decodeDocument(file string, root *yaml.Node) (*Document, []FieldError) {
	n := root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, nil
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil // only comments, or a bare ---
	}
	d := &docDecoder{file: file, lines: map[string]int{}}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, "", "a document must be a mapping with apiVersion, kind, metadata and spec, got %s", describeNode(n))
		return nil, d.errs
	}
	// Name the document in its errors as early as possible.
	apiVersion, apiNode := scalarField(n, "apiVersion")
	kind, kindNode := scalarField(n, "kind")
	if meta, _ := mappingValue(n, "metadata"); meta != nil {
		d.name, _ = scalarField(meta, "name")
	}
	d.kind = kind

	if e, err := measureNode(n, map[*yaml.Node]*nodeExtent{}, 0); err != nil {
		d.errorf(n.Line, "", "%s", err)
		return nil, d.errs
	} else if e.size > maxDocNodes {
		d.errorf(n.Line, "", "document too large: more than %d YAML nodes (aliases included)", maxDocNodes)
		return nil, d.errs
	}

	switch {
	case apiNode == nil || apiNode.Tag == "!!null":
		d.errorf(lineOr(apiNode, n), "apiVersion", "required; must be %q", APIVersion)
	case apiNode.Kind != yaml.ScalarNode:
		d.errorf(apiNode.Line, "apiVersion", "must be %q, got %s", APIVersion, describeNode(apiNode))
	case apiVersion != APIVersion:
		d.errorf(apiNode.Line, "apiVersion", "unsupported apiVersion %q; must be %q", apiVersion, APIVersion)
	}
	var newObj func() Object
	switch {
	case kindNode == nil || kindNode.Tag == "!!null":
		d.errorf(lineOr(kindNode, n), "kind", "required; known kinds: %s", knownKinds())
	case kindNode.Kind != yaml.ScalarNode:
		d.kind = ""
		d.errorf(kindNode.Line, "kind", "must be a string, got %s; known kinds: %s", describeNode(kindNode), knownKinds())
	default:
		if newObj = kindConstructors[kind]; newObj == nil {
			if s := suggest(kind, slices.Sorted(maps.Keys(kindConstructors))); s != "" {
				d.errorf(kindNode.Line, "kind", "unknown kind %q; did you mean %q? (known kinds: %s)", kind, s, knownKinds())
			} else {
				d.errorf(kindNode.Line, "kind", "unknown kind %q; known kinds: %s", kind, knownKinds())
			}
		}
	}
	if newObj == nil {
		return nil, d.errs
	}

	obj := newObj()
	d.decode(n, reflect.ValueOf(obj).Elem(), "", 0, 0)
	switch o := obj.(type) {
	case *Model:
		o.TypeMeta = TypeMeta{APIVersion: apiVersion, Kind: kind}
	case *InferenceService:
		o.TypeMeta = TypeMeta{APIVersion: apiVersion, Kind: kind}
	case *GitSource:
		o.TypeMeta = TypeMeta{APIVersion: apiVersion, Kind: kind}
	}
	if apiNode != nil {
		d.lines["apiVersion"] = apiNode.Line
	}
	d.lines["kind"] = kindNode.Line
	return &Document{File: file, Line: n.Line, Object: obj, Lines: d.lines}, d.errs
}

// lineOr is the line of n, else of the enclosing node.
func lineOr(n, enclosing *yaml.Node) int {
	if n != nil {
		return n.Line
	}
	return enclosing.Line
}

// mappingValue returns the value and key of key in mapping n (aliases resolved).
func mappingValue(n *yaml.Node, key string) (value, keyNode *yaml.Node) {
	n = unalias(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := unalias(n.Content[i]); k != nil && k.Kind == yaml.ScalarNode && k.Value == key {
			return unalias(n.Content[i+1]), k
		}
	}
	return nil, nil
}

// scalarField returns the text of a scalar field and its value node, which is
// nil when the field is absent.
func scalarField(n *yaml.Node, key string) (string, *yaml.Node) {
	v, _ := mappingValue(n, key)
	if v == nil || v.Kind != yaml.ScalarNode {
		return "", v
	}
	return v.Value, v
}

// unalias follows an alias to its anchor (at most a few hops: yaml.v3 only
// links an alias to an anchored node, never to another alias, but be safe).
func unalias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

// nodeExtent is how far a node reaches with its aliases expanded.
type nodeExtent struct {
	size   int // nodes, saturating just past maxDocNodes
	height int // levels below the node
}

// measureNode is the extent of n with every alias expanded, refusing documents
// nested deeper than maxDocDepth and aliases that contain themselves. The memo
// (nil entries: in progress) makes it linear in the parsed nodes however much
// the aliases multiply them.
func measureNode(n *yaml.Node, memo map[*yaml.Node]*nodeExtent, depth int) (nodeExtent, error) {
	tooDeep := fmt.Errorf("document nested too deeply: more than %d levels", maxDocDepth)
	if depth > maxDocDepth {
		return nodeExtent{}, tooDeep
	}
	if e, seen := memo[n]; seen {
		if e == nil {
			return nodeExtent{}, errors.New("a YAML alias refers to a node that contains it")
		}
		if depth+e.height > maxDocDepth {
			return nodeExtent{}, tooDeep
		}
		return *e, nil
	}
	memo[n] = nil
	e := nodeExtent{size: 1}
	children := n.Content
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nodeExtent{}, errors.New("a YAML alias has no anchor")
		}
		e.size, children = 0, []*yaml.Node{n.Alias} // the alias stands for its anchor
	}
	for _, c := range children {
		ce, err := measureNode(c, memo, depth+1)
		if err != nil {
			return nodeExtent{}, err
		}
		e.size = min(e.size+ce.size, maxDocNodes+1)
		e.height = max(e.height, ce.height+1)
	}
	memo[n] = &e
	return e, nil
}

// describeNode names what a node is, for "must be X, got Y" messages.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	switch n.Tag {
	case "!!str":
		return fmt.Sprintf("string %q", v)
	case "!!int", "!!float":
		return "number " + v
	case "!!bool":
		return "boolean " + v
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%s %q", n.Tag, v)
}

func childPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// decode decodes n into v, whose field path is path. keyLine is the line of
// the mapping key that n is the value of (0 for list items): errors about a
// value point at its key, where the field is named.
func (d *docDecoder) decode(n *yaml.Node, v reflect.Value, path string, keyLine, depth int) {
	if d.full {
		return
	}
	n = unalias(n) // measureNode rejected dangling and cyclic aliases
	if n == nil {
		return
	}
	line := keyLine
	if line == 0 {
		line = n.Line
	}
	if path != "" {
		d.lines[path] = line
	}
	if depth > maxDocDepth { // measureNode checked; kept so decode stands on its own
		d.errorf(line, path, "nested too deeply: more than %d levels", maxDocDepth)
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		v.SetZero()
		return
	}
	if v.Kind() == reflect.Pointer {
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path, keyLine, depth) // same node: no deeper
		v.Set(p)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		if n.Kind != yaml.ScalarNode {
			d.errorf(line, path, "must be a string, got %s", describeNode(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.errorf(line, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path, line, depth)
	case reflect.Map:
		d.decodeMap(n, v, path, line, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(line, path, "must be a list, got %s", describeNode(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), 0, depth+1)
		}
		v.Set(s)
	case reflect.String:
		// Any scalar is text: a name or digest of digits stays what it says.
		if n.Kind != yaml.ScalarNode {
			d.errorf(line, path, "must be a string, got %s", describeNode(n))
			return
		}
		if n.Tag == "!!binary" { // how YAML writes text that is not UTF-8
			var s string
			if err := n.Decode(&s); err != nil {
				d.errorf(line, path, "invalid !!binary value: %v", err)
				return
			}
			v.SetString(s)
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
			d.errorf(line, path, "must be an integer, got %s", describeNode(n))
			return
		}
		if v.OverflowInt(i) {
			d.errorf(line, path, "%d is out of range", i)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&u) != nil {
			d.errorf(line, path, "must be a non-negative integer, got %s", describeNode(n))
			return
		}
		if v.OverflowUint(u) {
			d.errorf(line, path, "%d is out of range", u)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&f) != nil {
			d.errorf(line, path, "must be a number, got %s", describeNode(n))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.errorf(line, path, "must be true or false, got %s", describeNode(n))
			return
		}
		v.SetBool(b)
	default:
		// A type this decoder was never taught: a bug here, not in the file.
		d.errorf(line, path, "cannot decode into a Go %s", v.Type())
	}
}

// mappingKey checks a key node of mapping n and returns its text.
func (d *docDecoder) mappingKey(k *yaml.Node, path string) (string, bool) {
	k = unalias(k)
	switch {
	case k == nil:
		return "", false
	case k.Tag == "!!merge":
		d.errorf(k.Line, path, "YAML merge keys (<<) are not supported")
		return "", false
	case k.Kind != yaml.ScalarNode:
		d.errorf(k.Line, path, "mapping keys must be strings, got %s", describeNode(k))
		return "", false
	case k.Tag == "!!null":
		return "", true
	case k.Tag == "!!binary":
		var s string
		if err := k.Decode(&s); err != nil {
			d.errorf(k.Line, path, "invalid !!binary key: %v", err)
			return "", false
		}
		return s, true
	}
	return k.Value, true
}

// seenKey reports a key already present in the mapping being decoded.
func (d *docDecoder) seenKey(seen map[string]int, key string, line int, field string) bool {
	if first, dup := seen[key]; dup {
		d.errorf(line, field, "duplicate key %q (first at line %d)", key, first)
		return true
	}
	seen[key] = line
	return false
}

func (d *docDecoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, line, depth int) {
	if n.Kind != yaml.MappingNode {
		d.errorf(line, path, "must be a mapping, got %s", describeNode(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, ok := d.mappingKey(n.Content[i], path)
		if !ok {
			continue
		}
		kl := unalias(n.Content[i]).Line
		fp := childPath(path, key)
		if d.seenKey(seen, key, kl, fp) {
			continue
		}
		if ignoredPaths[fp] {
			continue
		}
		f, known := fields.byName[key]
		if !known {
			msg := fmt.Sprintf("unknown field %q", key)
			if s := suggest(key, fields.names); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else {
				msg += "; known fields: " + strings.Join(fields.names, ", ")
			}
			d.errorf(kl, fp, "%s", msg)
			continue
		}
		d.decode(n.Content[i+1], v.FieldByIndex(f), fp, kl, depth+1)
	}
}

func (d *docDecoder) decodeMap(n *yaml.Node, v reflect.Value, path string, line, depth int) {
	if n.Kind != yaml.MappingNode {
		d.errorf(line, path, "must be a mapping, got %s", describeNode(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.errorf(line, path, "cannot decode into a Go %s", v.Type())
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, ok := d.mappingKey(n.Content[i], path)
		if !ok {
			continue
		}
		kl := unalias(n.Content[i]).Line
		fp := childPath(path, key)
		if d.seenKey(seen, key, kl, fp) {
			continue
		}
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(n.Content[i+1], e, fp, kl, depth+1)
		m.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), e)
	}
	v.Set(m)
}

// structFields is a struct type's fields by JSON name, embedded `json:",inline"`
// structs flattened: the names in declaration order (for messages and for
// MarshalYAML) and which of them the tag marks omitempty.
type structFields struct {
	byName    map[string][]int
	names     []string
	omitEmpty map[string]bool
}

var fieldCache sync.Map // reflect.Type -> *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	fs := &structFields{byName: map[string][]int{}, omitEmpty: map[string]bool{}}
	collectFields(t, nil, fs)
	f, _ := fieldCache.LoadOrStore(t, fs)
	return f.(*structFields)
}

func collectFields(t reflect.Type, index []int, fs *structFields) {
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" && opts == "" {
			continue
		}
		idx := append(slices.Clip(index), i)
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			collectFields(sf.Type, idx, fs)
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if _, dup := fs.byName[name]; !dup {
			fs.byName[name] = idx
			fs.names = append(fs.names, name)
			fs.omitEmpty[name] = slices.Contains(strings.Split(opts, ","), "omitempty")
		}
	}
}

// suggest returns the candidate closest to s when it is close enough to be a
// likely typo (case-insensitive, a transposition counting as one edit).
func suggest(s string, candidates []string) string {
	best, bestDist := "", -1
	limit := max(1, min(3, len(s)/3))
	for _, c := range candidates {
		dist := editDistance(strings.ToLower(s), strings.ToLower(c))
		if dist <= limit && dist < len(c) && (bestDist < 0 || dist < bestDist) {
			best, bestDist = c, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and adjacent transpositions. Inputs are
// field names, so the quadratic table stays tiny; long ones are not typos.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
