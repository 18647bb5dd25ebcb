// Package oip serves the Open Inference Protocol v2 (KServe v2 / Triton HTTP) over
// REST: the health, metadata and inference endpoints, Triton's binary tensor data,
// model repository and statistics extensions, and a fast codec that turns request
// bodies into serving.InferRequest values and responses back into bytes.
//
// The codec reads tensor data straight from the JSON text (numbers are parsed from
// their literals, never through float64 for integer types, and never through
// map[string]any or []any) so that the per-request overhead stays close to the
// cost of the bytes themselves. Decoded tensors may alias the request body: callers
// must not modify the body after decoding.
//
// The handlers are thin: decode → Backend → encode. Backend is defined here, at the
// consumer, and implemented by the serving layer.
package oip
