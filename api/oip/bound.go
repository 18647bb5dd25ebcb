package oip

import (
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// MaxDecodeFactor bounds what decoding a request may allocate besides the body
// itself: MaxDecodeFactor times the body's size, plus decodeSlack. Go's
// [][]byte costs 24 bytes per BYTES element, and a JSON element can be as
// short as `"",` (3 bytes), so 8 is the floor for BYTES tensors in this
// representation; every other datatype and encoding takes less (FP64 and
// INT64 from `0,`: 4×; binary BYTES: 6×). Past the bound a request is refused
// with 413 before the allocation that would pass it.
const MaxDecodeFactor = 8

// decodeSlack lets small requests carry whatever structure they like.
const decodeSlack = 64 << 10

// What decoding allocates per item, beyond the item's own bytes.
const (
	tensorCost    = 256 // a tensor: struct, shape, name, bookkeeping
	bytesElemCost = 24  // one BYTES element: its slice header
	outputCost    = 64  // one requested output
	paramCost     = 192 // one parameter: map slot and the garbage of growing the map, key, boxed value (measured ~165)
)

// DecodeOptions bound and check DecodeRequest. The zero value checks only the
// MaxDecodeFactor bound.
type DecodeOptions struct {
	// Model names the model in errors about inputs.
	Model string
	// Inputs, when Known, are the inputs the model expects: each input's name,
	// datatype and shape are checked (serving.CheckInput) before its data is
	// decoded, so data the model cannot take is never decoded.
	Inputs []tensor.TensorSpec
	Known  bool
	// Budget, if set, is asked before decoding allocates (the server's
	// in-flight budget); its error stops decoding and is returned.
	Budget Reserver
}

// Reserver takes n bytes of a budget, or says why not (*limits.Hold is one).
type Reserver interface {
	Reserve(n int64) error
}

// decodeState is what one decode may still allocate, and what it checks.
type decodeState struct {
	opts DecodeOptions
	body int   // the body's size, for messages
	left int64 // bytes decoding may still allocate
}

func newDecodeState(bodyLen int, opts DecodeOptions) decodeState {
	return decodeState{opts: opts, body: bodyLen, left: MaxDecodeFactor*int64(bodyLen) + decodeSlack}
}

// charge accounts for n bytes decoding is about to allocate for tensor label.
// (Labels are concrete types, not interfaces: boxing one would allocate on
// every call.)
func (d *decodeState) charge(n int64, label tensorRef) error {
	if d == nil || n <= 0 {
		return nil
	}
	if n > d.left {
		return d.tooLarge(label.String())
	}
	return d.take(n)
}

// chargeItem is charge for what is not a tensor ("parameters").
func (d *decodeState) chargeItem(n int64, what string) error {
	if d == nil || n <= 0 {
		return nil
	}
	if n > d.left {
		return d.tooLarge(what)
	}
	return d.take(n)
}

func (d *decodeState) take(n int64) error {
	if d.opts.Budget != nil {
		if err := d.opts.Budget.Reserve(n); err != nil {
			return err
		}
	}
	d.left -= n
	return nil
}

func (d *decodeState) tooLarge(what string) error {
	return errs.New(errs.TooLarge, "%s: decoded, the request would take more than %d× its %d-byte body; send fewer or larger elements per request (BYTES elements cost %d bytes each beyond their contents)",
		what, MaxDecodeFactor, d.body, bytesElemCost)
}

// checkInput checks input index against the model's signature, when known.
func (d *decodeState) checkInput(kind string, index int, t *tensor.Tensor) error {
	if d == nil || !d.opts.Known || kind != "input" {
		return nil
	}
	return serving.CheckInput(d.opts.Model, d.opts.Inputs, index, t)
}
