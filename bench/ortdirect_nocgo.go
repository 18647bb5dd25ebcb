//go:build !cgo

package bench

import (
	"errors"

	"github.com/nimbus-ai/nimbus/tensor"
)

func newORTDirect(string, tensor.Signature, *tensor.Tensor, int) (op, func(), error) {
	return nil, nil, errors.New("ort-direct needs cgo")
}
