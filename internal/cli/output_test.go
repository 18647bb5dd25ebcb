package cli

import (
	"bytes"
	"testing"
)

func TestYAMLQuoting(t *testing.T) {
	var b bytes.Buffer
	if err := writeYAML(&b, map[string]any{"s": "2", "b": "true", "n": 2, "e": "", "list": []int{1, 2}}); err != nil {
		t.Fatal(err)
	}
	want := "b: \"true\"\ne: \"\"\nlist:\n  - 1\n  - 2\nn: 2\ns: \"2\"\n"
	if b.String() != want {
		t.Errorf("yaml:\n%s\nwant:\n%s", b.String(), want)
	}
}
