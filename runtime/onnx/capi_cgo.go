//go:build cgo

package onnx

// This file is Nimbus's own cgo layer over the ONNX Runtime C API: just what
// serving needs, so that every tensor ONNX Runtime can exchange crosses it
// (rank 0 scalars, FP16/BF16 and strings of any shape, strings holding NUL
// bytes, optional inputs left out) and a Run is one cgo call when its outputs
// are preallocated. The library is opened with dlopen at the first use, as
// before, so a server without it still starts. The headers in include/ are ONNX
// Runtime's own (MIT), as shipped with github.com/yalue/onnxruntime_go v1.27.0.

/*
#cgo CFLAGS: -I${SRCDIR}/include -O2
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "onnxruntime_c_api.h"
#include "nimbus_capi.h"

static const OrtApiBase *nimbus_base;
static const OrtApi *nimbus_api;
static OrtEnv *nimbus_env;
static OrtMemoryInfo *nimbus_cpu;
static OrtAllocator *nimbus_alloc;

// nimbus_status turns a status into a malloc'ed message (the caller frees it)
// and its error code, and releases it. NULL means success.
static char *nimbus_status(OrtStatus *s, int *code) {
	if (s == NULL) return NULL;
	const char *m = nimbus_api->GetErrorMessage(s);
	if (code) *code = (int)nimbus_api->GetErrorCode(s);
	char *r = strdup(m ? m : "unknown ONNX Runtime error");
	nimbus_api->ReleaseStatus(s);
	return r;
}

static char *nimbus_errorf(const char *format, const char *arg) {
	char buf[1024];
	snprintf(buf, sizeof buf, format, arg);
	return strdup(buf);
}

// nimbus_init opens the library, takes its C API and creates the environment.
static char *nimbus_init(const char *path, int log_level) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) return nimbus_errorf("%s", dlerror());
	typedef const OrtApiBase *(*get_base_fn)(void);
	get_base_fn get_base = (get_base_fn)dlsym(h, "OrtGetApiBase");
	if (get_base == NULL) return nimbus_errorf("%s has no OrtGetApiBase: not an ONNX Runtime library", path);
	const OrtApiBase *base = get_base();
	const OrtApi *api = base->GetApi(ORT_API_VERSION);
	if (api == NULL) {
		char buf[256];
		snprintf(buf, sizeof buf, "ONNX Runtime %s does not offer C API version %d", base->GetVersionString(), ORT_API_VERSION);
		return strdup(buf);
	}
	nimbus_base = base;
	nimbus_api = api;
	char *err = nimbus_status(api->CreateEnv((OrtLoggingLevel)log_level, "nimbus", &nimbus_env), NULL);
	if (err) return err;
	err = nimbus_status(api->CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &nimbus_cpu), NULL);
	if (err) return err;
	return nimbus_status(api->GetAllocatorWithDefaultOptions(&nimbus_alloc), NULL);
}

static const char *nimbus_version(void) { return nimbus_base->GetVersionString(); }

// nimbus_load creates a session from a model's bytes, with n config entries.
static char *nimbus_load(const void *data, size_t len, int intra, int inter,
		const char *const *keys, const char *const *values, size_t n, OrtSession **out) {
	OrtSessionOptions *so = NULL;
	char *err = nimbus_status(nimbus_api->CreateSessionOptions(&so), NULL);
	if (err) return err;
	err = nimbus_status(nimbus_api->SetIntraOpNumThreads(so, intra), NULL);
	if (!err) err = nimbus_status(nimbus_api->SetInterOpNumThreads(so, inter), NULL);
	if (!err) err = nimbus_status(nimbus_api->DisableCpuMemArena(so), NULL);
	for (size_t i = 0; !err && i < n; i++)
		err = nimbus_status(nimbus_api->AddSessionConfigEntry(so, keys[i], values[i]), NULL);
	if (!err) err = nimbus_status(nimbus_api->CreateSessionFromArray(nimbus_env, data, len, so, out), NULL);
	nimbus_api->ReleaseSessionOptions(so);
	return err;
}

static void nimbus_release_session(OrtSession *s) { nimbus_api->ReleaseSession(s); }

static char *nimbus_run_options(OrtRunOptions **out) { return nimbus_status(nimbus_api->CreateRunOptions(out), NULL); }
static void nimbus_terminate(OrtRunOptions *ro) { OrtStatus *s = nimbus_api->RunOptionsSetTerminate(ro); if (s) nimbus_api->ReleaseStatus(s); }
static void nimbus_release_run_options(OrtRunOptions *ro) { nimbus_api->ReleaseRunOptions(ro); }


static OrtStatus *nimbus_input(nimbus_tensor *t, OrtValue **v) {
	if (t->elem != ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING)
		return nimbus_api->CreateTensorWithDataAsOrtValue(nimbus_cpu, t->data, t->nbytes, t->shape, t->rank,
			(ONNXTensorElementDataType)t->elem, v);
	OrtStatus *s = nimbus_api->CreateTensorAsOrtValue(nimbus_alloc, t->shape, t->rank, ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING, v);
	for (size_t k = 0; s == NULL && k < t->count; k++) {
		size_t n = t->offs[k + 1] - t->offs[k];
		char *buf = NULL;
		s = nimbus_api->GetResizedStringTensorElementBuffer(*v, k, n, &buf);
		if (s == NULL && n > 0) memcpy(buf, (const char *)t->data + t->offs[k], n);
	}
	return s;
}

static OrtStatus *nimbus_describe(nimbus_tensor *t, OrtValue *v) {
	enum ONNXType type = ONNX_TYPE_UNKNOWN;
	OrtStatus *s = nimbus_api->GetValueType(v, &type);
	if (s) return s;
	if (type != ONNX_TYPE_TENSOR) {
		t->not_tensor = 1;
		return NULL;
	}
	OrtTensorTypeAndShapeInfo *info = NULL;
	if ((s = nimbus_api->GetTensorTypeAndShape(v, &info))) return s;
	ONNXTensorElementDataType elem;
	size_t rank = 0, count = 0;
	s = nimbus_api->GetTensorElementType(info, &elem);
	if (!s) s = nimbus_api->GetDimensionsCount(info, &rank);
	if (!s && rank > 0 && rank <= t->dims_cap) s = nimbus_api->GetDimensions(info, t->out_dims, rank);
	if (!s) s = nimbus_api->GetTensorShapeElementCount(info, &count);
	nimbus_api->ReleaseTensorTypeAndShapeInfo(info);
	if (s) return s;
	t->out_elem = (int32_t)elem;
	t->out_rank = rank;
	t->out_count = count;
	if (elem == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) return nimbus_api->GetStringTensorDataLength(v, &t->out_bytes);
	return nimbus_api->GetTensorMutableData(v, &t->out_data);
}

// nimbus_run runs sess on in and fills out. vals is scratch for n_in+n_out
// values. Values made here for inputs and preallocated outputs are released
// before it returns; on success the caller releases the others with
// nimbus_release. On failure nothing is left to release.
static char *nimbus_run(OrtSession *sess, OrtRunOptions *ro,
		const char *const *in_names, nimbus_tensor *in, size_t n_in,
		const char *const *out_names, nimbus_tensor *out, size_t n_out,
		OrtValue **vals, int *code) {
	OrtValue **outs = vals + n_in;
	OrtStatus *s = NULL;
	size_t i;
	memset(vals, 0, (n_in + n_out) * sizeof *vals);
	for (i = 0; i < n_out; i++) out[i].value = NULL;
	for (i = 0; s == NULL && i < n_in; i++) s = nimbus_input(&in[i], &vals[i]);
	for (i = 0; s == NULL && i < n_out; i++) {
		if (out[i].data)
			s = nimbus_api->CreateTensorWithDataAsOrtValue(nimbus_cpu, out[i].data, out[i].nbytes, out[i].shape,
				out[i].rank, (ONNXTensorElementDataType)out[i].elem, &outs[i]);
	}
	if (s == NULL) s = nimbus_api->Run(sess, ro, in_names, (const OrtValue *const *)vals, n_in, out_names, n_out, outs);
	for (i = 0; s == NULL && i < n_out; i++) {
		if (out[i].data == NULL) {
			out[i].value = outs[i];
			out[i].not_tensor = 0;
			s = nimbus_describe(&out[i], outs[i]);
		}
	}
	for (i = 0; i < n_in + n_out; i++) {
		int keep = s == NULL && i >= n_in && out[i - n_in].data == NULL;
		if (vals[i] && !keep) nimbus_api->ReleaseValue(vals[i]);
	}
	if (s)
		for (i = 0; i < n_out; i++) out[i].value = NULL;
	return nimbus_status(s, code);
}

// nimbus_dims copies the shape of a value whose rank exceeded dims_cap.
static char *nimbus_dims(OrtValue *v, int64_t *dims, size_t rank) {
	OrtTensorTypeAndShapeInfo *info = NULL;
	char *err = nimbus_status(nimbus_api->GetTensorTypeAndShape(v, &info), NULL);
	if (err) return err;
	err = nimbus_status(nimbus_api->GetDimensions(info, dims, rank), NULL);
	nimbus_api->ReleaseTensorTypeAndShapeInfo(info);
	return err;
}

// nimbus_strings copies a string output into buf (nbytes) with each element's
// start offset in offs (count).
static char *nimbus_strings(OrtValue *v, void *buf, size_t nbytes, size_t *offs, size_t count) {
	return nimbus_status(nimbus_api->GetStringTensorContent(v, buf, nbytes, offs, count), NULL);
}

static void nimbus_release(nimbus_tensor *out, size_t n) {
	for (size_t i = 0; i < n; i++) {
		if (out[i].value) nimbus_api->ReleaseValue(out[i].value);
		out[i].value = NULL;
	}
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// ortLogLevelError is ORT_LOGGING_LEVEL_ERROR: ONNX Runtime logs errors only.
const ortLogLevelError = 3

// ortInvalidArgument is ORT_INVALID_ARGUMENT, the code of a run refused for its inputs.
const ortInvalidArgument = 2

// cError turns a message nimbus_* returned into an error and frees it.
func cError(msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}

// ortInit opens the library at path and creates the process's environment.
func ortInit(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return cError(C.nimbus_init(cpath, ortLogLevelError))
}

// ortVersion is the library's version; only valid after ortInit succeeded.
func ortVersion() string { return C.GoString(C.nimbus_version()) }

// cStrings is a C array of C strings, freed by free.
type cStrings []*C.char

func newCStrings(ss []string) cStrings {
	cs := make(cStrings, len(ss))
	for i, s := range ss {
		cs[i] = C.CString(s)
	}
	return cs
}

func (cs cStrings) free() {
	for i, c := range cs {
		C.free(unsafe.Pointer(c))
		cs[i] = nil
	}
}

// ptr is the array's first element for C (nil when empty); cs holds C
// pointers only, so Go may pass it.
func (cs cStrings) ptr() **C.char {
	if len(cs) == 0 {
		return nil
	}
	return &cs[0]
}

// sessionConfig is how a session runs.
type sessionConfig struct {
	intra, inter int
	entries      [][2]string // AddSessionConfigEntry key, value
}

// ortSession creates a session from a model's bytes.
func ortSession(data []byte, c sessionConfig) (*C.OrtSession, error) {
	keys, values := make([]string, len(c.entries)), make([]string, len(c.entries))
	for i, e := range c.entries {
		keys[i], values[i] = e[0], e[1]
	}
	ck, cv := newCStrings(keys), newCStrings(values)
	defer ck.free()
	defer cv.free()
	var sess *C.OrtSession
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(unsafe.SliceData(data))
	}
	if err := cError(C.nimbus_load(p, C.size_t(len(data)), C.int(c.intra), C.int(c.inter),
		ck.ptr(), cv.ptr(), C.size_t(len(c.entries)), &sess)); err != nil {
		return nil, err
	}
	return sess, nil
}

func releaseSession(s *C.OrtSession) { C.nimbus_release_session(s) }

func newRunOptions() (*C.OrtRunOptions, error) {
	var ro *C.OrtRunOptions
	if err := cError(C.nimbus_run_options(&ro)); err != nil {
		return nil, err
	}
	return ro, nil
}

func terminateRun(ro *C.OrtRunOptions)      { C.nimbus_terminate(ro) }
func releaseRunOptions(ro *C.OrtRunOptions) { C.nimbus_release_run_options(ro) }

// runError is a failed Run: ONNX Runtime's message and error code.
type runError struct {
	code int
	msg  string
}

func (e *runError) Error() string { return e.msg }

// ortRun runs sess; see nimbus_run. Every Go pointer inside in and out must be
// pinned by the caller.
func ortRun(sess *C.OrtSession, ro *C.OrtRunOptions, inNames cStrings, in []C.nimbus_tensor,
	outNames cStrings, out []C.nimbus_tensor, vals []*C.OrtValue) error {
	var code C.int
	var inp, outp *C.nimbus_tensor
	if len(in) > 0 {
		inp = &in[0]
	}
	if len(out) > 0 {
		outp = &out[0]
	}
	msg := C.nimbus_run(sess, ro, inNames.ptr(), inp, C.size_t(len(in)), outNames.ptr(), outp, C.size_t(len(out)),
		unsafe.SliceData(vals), &code)
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return &runError{code: int(code), msg: C.GoString(msg)}
}

// valueDims copies the shape (rank dims) of an output ONNX Runtime allocated.
func valueDims(t *C.nimbus_tensor, dims []int64) error {
	return cError(C.nimbus_dims(t.value, (*C.int64_t)(unsafe.Pointer(unsafe.SliceData(dims))), C.size_t(len(dims))))
}

// valueStrings copies a string output into buf with each element's start in offs.
func valueStrings(t *C.nimbus_tensor, buf []byte, offs []C.size_t) error {
	return cError(C.nimbus_strings(t.value, unsafe.Pointer(unsafe.SliceData(buf)), C.size_t(len(buf)),
		unsafe.SliceData(offs), C.size_t(len(offs))))
}

// releaseOutputs frees the values ONNX Runtime allocated for out.
func releaseOutputs(out []C.nimbus_tensor) {
	if len(out) > 0 {
		C.nimbus_release(&out[0], C.size_t(len(out)))
	}
}
