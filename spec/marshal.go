package spec

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/nimbus-ai/nimbus/registry"
)

// MarshalYAML writes objs as YAML documents separated by "---", by the same
// JSON field names Decode reads: fields in the order the types declare them
// (apiVersion, kind, metadata, spec, status), map keys sorted, two-space
// indents, durations as short text ("500ms", "5m", "1h30m"), and nil or
// omitempty-empty fields left out. Decode reads the output back to the same
// object, status and server-written metadata aside. Nothing is normalized or
// defaulted here: call Default or Normalize first for that.
func MarshalYAML(objs ...Object) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for i, obj := range objs {
		if obj == nil || reflect.ValueOf(obj).IsNil() {
			return nil, fmt.Errorf("encode yaml: object %d is nil", i)
		}
		n, err := encodeValue(reflect.ValueOf(obj))
		if err == nil {
			err = enc.Encode(n)
		}
		if err != nil {
			return nil, fmt.Errorf("encode yaml: %s %s: %w", obj.GetKind(), obj.GetMeta().Name, err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode yaml: %w", err)
	}
	return buf.Bytes(), nil
}

var (
	durationType      = reflect.TypeFor[registry.Duration]()
	timeType          = reflect.TypeFor[time.Time]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// encodeValue builds the YAML node of v; nil pointers, maps and slices give a
// nil node, which the caller leaves out.
func encodeValue(v reflect.Value) (*yaml.Node, error) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil, nil
		}
		return encodeValue(v.Elem())
	}
	if v.Type() == durationType {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: shortDuration(time.Duration(v.Int()))}, nil
	}
	if v.Type() == timeType { // plain, as kubectl shows it: 2025-01-02T03:04:05Z
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!timestamp", Value: v.Interface().(time.Time).Format(time.RFC3339Nano)}, nil
	}
	if v.Type().Implements(textMarshalerType) {
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, err
		}
		return stringNode(string(b)), nil
	}
	switch v.Kind() {
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		if err := encodeFields(n, v); err != nil {
			return nil, err
		}
		return n, nil
	case reflect.Map:
		if v.IsNil() {
			return nil, nil
		}
		if v.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("cannot encode a Go %s", v.Type())
		}
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			val, err := encodeValue(v.MapIndex(k))
			if err != nil {
				return nil, err
			}
			if val == nil {
				val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
			}
			n.Content = append(n.Content, stringNode(k.String()), val)
		}
		return n, nil
	case reflect.Slice:
		if v.IsNil() {
			return nil, nil
		}
		n := &yaml.Node{Kind: yaml.SequenceNode}
		if v.Len() == 0 {
			n.Style = yaml.FlowStyle // []
		}
		for i := range v.Len() {
			item, err := encodeValue(v.Index(i))
			if err != nil {
				return nil, err
			}
			if item == nil {
				item = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
			}
			n.Content = append(n.Content, item)
		}
		return n, nil
	case reflect.String:
		return stringNode(v.String()), nil
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return scalarNode(v.Interface())
	}
	return nil, fmt.Errorf("cannot encode a Go %s", v.Type())
}

// scalarNode lets yaml.v3 pick a number's or boolean's form.
func scalarNode(v any) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return &n, nil
}

// stringNode is text that reads back as the same string: quoted where it would
// read as another type ("123", "true", "~"), base64 !!binary where it is not
// UTF-8, and double-quoted where it starts with a line break, which yaml.v3
// drops from a literal block ("\n" would come back as ""). Node.Encode is
// not used: it loses such breaks too.
func stringNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	switch {
	case !utf8.ValidString(s):
		n.Tag = "" // the encoder writes it as !!binary
	case strings.HasPrefix(s, "\n"):
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

// encodeFields appends the fields of struct v to mapping n by their JSON names,
// flattening embedded `json:",inline"` structs, leaving out nil pointers, maps
// and slices always and other empty values where the tag says omitempty.
// The fields are those the decoder knows (fieldsOf), in the same order.
func encodeFields(n *yaml.Node, v reflect.Value) error {
	fs := fieldsOf(v.Type())
	for _, name := range fs.names {
		fv := v.FieldByIndex(fs.byName[name])
		if fs.omitEmpty[name] && isEmptyValue(fv) {
			continue
		}
		val, err := encodeValue(fv)
		if err != nil {
			return err
		}
		if val == nil {
			continue
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, val)
	}
	return nil
}

// isEmptyValue is encoding/json's omitempty rule.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// shortDuration is d as Go writes it, less the zero units it trails with:
// "5m" for 5m0s, "1h" for 1h0m0s, "1h30m" for 1h30m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
