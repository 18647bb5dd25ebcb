//go:build cgo

package onnx

import (
	"fmt"
	"testing"
)

func TestResolveShape(t *testing.T) {
	dims := map[string]int64{"batch": 5, "seq": 0}
	tests := []struct {
		name   string
		spec   []int64
		params []string
		want   string // "" means unresolvable
	}{
		{"static", []int64{2, 3}, []string{"", ""}, "[2 3]"},
		{"batch", []int64{-1, 3}, []string{"batch", ""}, "[5 3]"},
		{"zero-sized dim", []int64{-1, -1}, []string{"batch", "seq"}, "[5 0]"},
		{"unknown param", []int64{-1}, []string{"other"}, ""},
		{"anonymous dynamic dim", []int64{-1}, []string{""}, ""},
		{"unknown rank", nil, nil, ""},
		{"scalar", []int64{}, []string{}, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := resolveShapeInto(nil, tt.spec, tt.params, dims)
			if tt.want == "" {
				if ok {
					t.Fatalf("resolveShape = %v, want unresolvable", got)
				}
				return
			}
			if !ok || fmt.Sprint(got) != tt.want {
				t.Fatalf("resolveShape = %v, %v; want %s", got, ok, tt.want)
			}
		})
	}
}
