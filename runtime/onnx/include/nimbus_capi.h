// Nimbus's own declarations for its cgo layer over the ONNX Runtime C API
// (runtime/onnx/capi_cgo.go).
#ifndef NIMBUS_CAPI_H
#define NIMBUS_CAPI_H

#include <stddef.h>
#include <stdint.h>
#include "onnxruntime_c_api.h"

// nimbus_tensor is one input, or one output: a preallocated one when data is
// set (ONNX Runtime writes into it), else one ONNX Runtime allocates, which
// nimbus_run describes in the out_ fields and nimbus_release frees.
typedef struct {
	void *data;           // numeric: the elements; strings (inputs): the bytes of all elements
	size_t nbytes;
	const int64_t *shape; // NULL for a scalar
	size_t rank;
	int32_t elem;         // ONNXTensorElementDataType
	const size_t *offs;   // string inputs: count+1 offsets into data
	size_t count;         // string inputs: number of elements
	// Filled by nimbus_run for outputs ONNX Runtime allocated:
	OrtValue *value;
	void *out_data;       // numeric data (NULL for strings)
	size_t out_bytes;     // numeric: bytes of data; strings: bytes of all elements
	size_t out_count;     // number of elements
	int32_t out_elem;
	size_t out_rank;
	int64_t *out_dims;    // the caller's buffer, dims_cap long; the shape when out_rank <= dims_cap
	size_t dims_cap;
	int not_tensor;       // the value is no tensor (e.g. an optional output without a value)
} nimbus_tensor;

#endif
