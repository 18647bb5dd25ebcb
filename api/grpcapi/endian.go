package grpcapi

import (
	"encoding/binary"
	"unsafe"
)

// hostLittleEndian: tensor data is little-endian, so on such hosts (every
// platform Nimbus ships for) typed contents and packed bytes have the same
// memory layout and convert with one copy instead of a loop per element.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// fixed are the element types of the typed contents fields that map one to one
// onto a tensor's little-endian bytes.
type fixed interface {
	~int32 | ~int64 | ~uint32 | ~uint64 | ~float32 | ~float64
}

func asBytes[T fixed](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}

// putLE writes src into dst (len(src)*size bytes) little-endian; put is the
// portable one-element version.
func putLE[T fixed](dst []byte, src []T, put func([]byte, T)) {
	if hostLittleEndian {
		copy(dst, asBytes(src))
		return
	}
	var zero T
	size := int(unsafe.Sizeof(zero))
	for i, v := range src {
		put(dst[i*size:], v)
	}
}

// getLE fills dst from little-endian src; get is the portable one-element version.
func getLE[T fixed](dst []T, src []byte, get func([]byte) T) {
	if hostLittleEndian {
		copy(asBytes(dst), src)
		return
	}
	var zero T
	size := int(unsafe.Sizeof(zero))
	for i := range dst {
		dst[i] = get(src[i*size:])
	}
}
