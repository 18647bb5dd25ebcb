package spec

import "testing"

func TestRedactURI(t *testing.T) {
	for in, want := range map[string]string{
		"https://models.example.com/fraud-v2.onnx":                       "https://models.example.com/fraud-v2.onnx",
		"https://bucket.s3.amazonaws.com/m.onnx?X-Amz-Signature=abc&X=1": "https://bucket.s3.amazonaws.com/m.onnx?<redacted>",
		"https://user:secret@example.com/m.onnx":                         "https://example.com/m.onnx",
		"file:///srv/models/m.onnx":                                      "file:///srv/models/m.onnx",
		"https://example.com/m.onnx#frag":                                "https://example.com/m.onnx",
		"":                                                               "",
	} {
		if got := RedactURI(in); got != want {
			t.Errorf("RedactURI(%q) = %q, want %q", in, got, want)
		}
	}
}
