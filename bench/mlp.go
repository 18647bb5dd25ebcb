package bench

import "github.com/nimbus-ai/nimbus/internal/mlpgen"

// MLPSpec is mlpgen.MLPSpec: a generated two-layer perceptron.
type MLPSpec = mlpgen.MLPSpec

// BigMLP is the cold-start benchmark's large model: 256 → 4096 → 256, 8.4 MB.
var BigMLP = mlpgen.BigMLP

// Variant returns model with distinct bytes (a distinct artifact) for the
// same graph; see mlpgen.Variant.
func Variant(model []byte, i int) []byte { return mlpgen.Variant(model, i) }
