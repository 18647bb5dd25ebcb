// Package onnx serves ONNX models. Inspector reads a model's signature in pure Go;
// Runtime runs models with ONNX Runtime through a small cgo layer of its own over
// the ONNX Runtime C API (capi_cgo.go), which needs cgo to build and the ONNX
// Runtime shared library (>= 1.24, loaded with dlopen on first use) to run. Any
// tensor ONNX Runtime exchanges crosses it: every OIP type at any rank, scalars
// included, outputs whose shape only the run decides, strings with NUL bytes,
// and optional inputs left out. Builds without cgo get a Runtime whose Load
// reports that ONNX Runtime support is missing; the rest of Nimbus still works.
//
// The library is found by FindLibrary: $NIMBUS_ORT_LIB, else
// .deps/onnxruntime/libonnxruntime.so.1 as installed by scripts/install-ort.sh.
package onnx

// Format is the artifact format this package serves.
const Format = "onnx"
