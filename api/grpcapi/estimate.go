package grpcapi

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// inferCost estimates, from a ModelInferRequest's wire bytes alone, what
// proto.Unmarshal and RequestFromProto allocate for it (garbage from growing
// slices included): an upper bound for every message Unmarshal accepts, so that
// a message whose decoding would inflate past the bound is refused before it is
// decoded. It never fails: past malformed bytes it adds their length (Unmarshal
// refuses them after allocating at most what came before).
//
// Protobuf's own decoding is where BYTES inflate on gRPC: every bytes_contents
// element becomes its own allocation plus a 24-byte slice header, and a
// repeated field sent as many packed chunks is re-copied whole for each chunk
// (quadratic). Both are counted as Go allocates them.
//
// The conversion assumes a little-endian host, where 4- and 8-byte typed
// contents are aliased, not copied (see decodeTyped).
func inferCost(b []byte) int64 {
	var e estimator
	e.request(b)
	return e.total
}

// Object sizes, rounded up to Go's size classes.
const (
	requestObjCost = 176 + 144 // pb.ModelInferRequest + serving.InferRequest
	// InferInputTensor + tensor.Tensor + a slot in the duplicate-name check.
	inputObjCost    = 112 + 112 + 64
	contentsObjCost = 240 // InferTensorContents
	// InferRequestedOutputTensor + serving.OutputRequest, and room for the
	// race detector's larger objects.
	outputObjCost = 64 + 24 + 32
	// One parameter: the InferParameter and its oneof wrapper, the map entry
	// protobuf decodes it through, a slot in the protobuf map and one in the
	// converted map (with the garbage of growing both); key and string values
	// are counted by length.
	// Measured: about 250 bytes per entry for thousands of entries.
	paramEntryCost = 288
)

type estimator struct {
	total int64
	// Input i's datatype is BYTES; raw[i] is the length of raw entry i.
	bytesInputs []bool
	raw         []int64
}

func (e *estimator) add(n int64) { e.total += n }

// str counts a string or bytes field of length n: one allocation unless empty.
func (e *estimator) str(n int) {
	if n > 0 {
		e.add(allocSize(int64(n)))
	}
}

// allocSize is what the allocator hands out for n bytes: size classes are at
// most 1/8 apart below 32 KiB; larger objects take whole 8 KiB pages.
func allocSize(n int64) int64 {
	switch {
	case n <= 0:
		return 0
	case n <= 8:
		return 8
	case n <= 32<<10:
		return n + n/8 + 8
	default:
		return n + 8<<10
	}
}

// growth follows one slice that protobuf fills by appending (element by element
// for unpacked fields, growing as Go's append does) and by packed chunks (each
// one reallocating it to exactly its new length and copying what it held).
// Every allocation counts, the arrays left behind too: a slice grown 1.25× at a
// time allocates about five times its final size in all.
type growth struct {
	n, cap int64
}

// appendN accounts for appending k elements of size bytes at once.
func (g *growth) appendN(e *estimator, k, size int64) {
	if g.n+k > g.cap {
		g.cap = nextCap(g.n+k, g.cap)
		e.add(allocSize(g.cap * size))
	}
	g.n += k
}

// nextCap is the capacity Go's append grows a slice of capacity old to, to hold
// n elements (runtime.nextslicecap, before size-class rounding, which only
// makes later growth rarer).
func nextCap(n, old int64) int64 {
	if n > 2*old {
		return n
	}
	const threshold = 256
	if old < threshold {
		return 2 * old
	}
	c := old
	for c < n {
		c += (c + 3*threshold) >> 2
	}
	return c
}

// chunk accounts for a packed run of k elements of size bytes: protobuf
// reallocates the slice to exactly its new length for every run.
func (g *growth) chunk(e *estimator, k, size int64) {
	if k == 0 {
		return
	}
	g.n += k
	g.cap = g.n
	e.add(allocSize(g.cap * size))
}

// unknown accounts for an unknown field of n bytes appended to a message's
// unknown fields.
func (g *growth) unknown(e *estimator, n int64) { g.appendN(e, n, 1) }

// fields walks a message's fields, calling fn with each field's number, type
// and value bytes (the whole encoded value for varint and fixed types); fn
// returns false for a field it does not know (an unknown field). It stops at
// malformed bytes, counting what is left.
func (e *estimator) fields(b []byte, unknown *growth, fn func(num protowire.Number, typ protowire.Type, v []byte) bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			e.add(int64(len(b)))
			return
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			e.add(int64(len(b)))
			return
		}
		v := b[n : n+m]
		if typ == protowire.BytesType {
			l, k := protowire.ConsumeBytes(v)
			if k < 0 {
				e.add(int64(len(b)))
				return
			}
			v = l
		}
		if !fn(num, typ, v) {
			unknown.unknown(e, int64(n+m))
		}
		b = b[n+m:]
	}
}

func (e *estimator) request(b []byte) {
	e.add(requestObjCost)
	var unknown, inputs, outputs, raw growth
	e.fields(b, &unknown, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		switch {
		case typ != protowire.BytesType || num < 1 || num > 7:
			return false
		case num <= 3: // model_name, model_version, id
			e.str(len(v))
		case num == 4: // parameters
			e.param(v)
		case num == 5: // inputs
			inputs.appendN(e, 1, 8)
			e.add(8) // the converted request's Inputs slot
			e.input(v)
		case num == 6: // outputs
			outputs.appendN(e, 1, 8)
			e.output(v)
		case num == 7: // raw_input_contents
			raw.appendN(e, 1, 24)
			e.str(len(v))
			e.raw = append(e.raw, int64(len(v)))
		}
		return true
	})
	// Splitting a raw BYTES entry: a slice header per element, each element
	// taking at least its 4-byte length.
	for i, n := range e.raw {
		if i < len(e.bytesInputs) && e.bytesInputs[i] {
			e.add(allocSize(n / 4 * 24))
		}
	}
}

// param counts one map entry of parameters (key 1, InferParameter 2).
func (e *estimator) param(b []byte) {
	e.add(paramEntryCost)
	var unknown growth
	e.fields(b, &unknown, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		if typ != protowire.BytesType || (num != 1 && num != 2) {
			return false
		}
		if num == 1 {
			e.str(len(v)) // the key, in the protobuf map and the converted one
			e.str(len(v))
			return true
		}
		var pu growth
		e.fields(v, &pu, func(num protowire.Number, typ protowire.Type, v []byte) bool {
			if num == 3 && typ == protowire.BytesType { // string_param
				e.str(len(v))
				return true
			}
			return num >= 1 && num <= 5 && typ != protowire.BytesType
		})
		return true
	})
}

func (e *estimator) output(b []byte) {
	e.add(outputObjCost)
	var unknown growth
	e.fields(b, &unknown, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		switch {
		case typ != protowire.BytesType:
			return false
		case num == 1:
			e.str(len(v))
		case num == 2:
			e.param(v)
		default:
			return false
		}
		return true
	})
}

func (e *estimator) input(b []byte) {
	e.add(inputObjCost)
	idx := len(e.bytesInputs)
	e.bytesInputs = append(e.bytesInputs, false)
	var unknown, shape growth
	var c *contentsState
	e.fields(b, &unknown, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		switch num {
		case 1: // name
			if typ != protowire.BytesType {
				return false
			}
			e.str(len(v))
		case 2: // datatype
			if typ != protowire.BytesType {
				return false
			}
			e.str(len(v))
			e.bytesInputs[idx] = string(v) == "BYTES"
		case 3: // shape
			return e.repeatedScalar(&shape, typ, v, protowire.VarintType, 8)
		case 4: // parameters
			if typ != protowire.BytesType {
				return false
			}
			e.param(v)
		case 5: // contents: repeated occurrences merge into one message
			if typ != protowire.BytesType {
				return false
			}
			if c == nil {
				e.add(contentsObjCost)
				c = &contentsState{}
			}
			e.contents(c, v)
		default:
			return false
		}
		return true
	})
}

// contentsState follows the repeated fields of one InferTensorContents.
type contentsState struct {
	unknown growth
	fields  [9]growth // by field number
	elems   [9]int64  // elements per field, for the conversion
}

// Per typed field: its element size in Go, its wire type when unpacked, and
// what the conversion copies per element (4- and 8-byte contents are aliased).
var typedWire = [9]struct {
	size, convert int64
	wire          protowire.Type
}{
	1: {1, 1, protowire.VarintType},  // bool_contents → BOOL data
	2: {4, 2, protowire.VarintType},  // int_contents → at most INT16 data
	3: {8, 0, protowire.VarintType},  // int64_contents
	4: {4, 2, protowire.VarintType},  // uint_contents → at most UINT16 data
	5: {8, 0, protowire.VarintType},  // uint64_contents
	6: {4, 0, protowire.Fixed32Type}, // fp32_contents
	7: {8, 0, protowire.Fixed64Type}, // fp64_contents
}

func (e *estimator) contents(c *contentsState, b []byte) {
	e.fields(b, &c.unknown, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		switch {
		case num == 8: // bytes_contents
			if typ != protowire.BytesType {
				return false
			}
			c.fields[8].appendN(e, 1, 24)
			e.str(len(v))
			return true
		case num >= 1 && num <= 7:
			f := typedWire[num]
			before := c.fields[num].n
			if !e.repeatedScalar(&c.fields[num], typ, v, f.wire, f.size) {
				return false
			}
			added := c.fields[num].n - before
			c.elems[num] += added
			e.add(allocSize(added * f.convert))
			return true
		}
		return false
	})
}

// repeatedScalar counts one occurrence of a repeated scalar field: packed (a
// length-delimited run) or one unpacked element of wire type wire. It reports
// false for a wire type the field cannot have (an unknown field to protobuf).
func (e *estimator) repeatedScalar(g *growth, typ protowire.Type, v []byte, wire protowire.Type, size int64) bool {
	switch typ {
	case protowire.BytesType:
		var k int64
		switch wire {
		case protowire.VarintType:
			for _, c := range v {
				if c < 0x80 {
					k++
				}
			}
		case protowire.Fixed32Type:
			k = int64(len(v) / 4)
		case protowire.Fixed64Type:
			k = int64(len(v) / 8)
		}
		g.chunk(e, k, size)
		return true
	case wire:
		g.appendN(e, 1, size)
		return true
	}
	return false
}
