// Command mlpgen writes a deterministic two-layer MLP as an ONNX file (see
// bench.MLPSpec): the same flags always give the same bytes. It made
// testdata/models/fraud_v1.onnx and fraud_v2.onnx, two versions of one model
// (same signature, different weights) for the canary walkthrough, and
// fixed_batch.onnx, which cannot be batched:
//
//	go run ./bench/cmd/mlpgen -inputs 4 -hidden 16 -outputs 1 -seed 1 -o testdata/models/fraud_v1.onnx
//	go run ./bench/cmd/mlpgen -inputs 4 -hidden 16 -outputs 1 -seed 2 -o testdata/models/fraud_v2.onnx
//	go run ./bench/cmd/mlpgen -inputs 4 -hidden 16 -outputs 1 -seed 3 -fixed-batch 1 -o testdata/models/fixed_batch.onnx
//
// and fraud_v3_broken.onnx, a version that fails on transactions whose third
// feature is 2 or more (the rollback walkthrough):
//
//	go run ./bench/cmd/mlpgen -inputs 4 -hidden 16 -outputs 1 -seed 5 -fail-on-column 2 -o testdata/models/fraud_v3_broken.onnx
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/nimbus-ai/nimbus/bench"
)

func main() {
	var s bench.MLPSpec
	var out string
	flag.IntVar(&s.Inputs, "inputs", 4, "input features")
	flag.IntVar(&s.Hidden, "hidden", 16, "hidden units")
	flag.IntVar(&s.Outputs, "outputs", 1, "outputs")
	flag.Uint64Var(&s.Seed, "seed", 1, "weight seed")
	flag.IntVar(&s.FixedBatch, "fixed-batch", 0, "fix the first dimension to this size (0: dynamic batch)")
	flag.IntVar(&s.GuardColumn, "fail-on-column", -1, "fail (in ONNX Runtime) on rows whose input in this column truncates to an integer outside -2..1 (-1: never fail)")
	flag.StringVar(&out, "o", "", "output file (required)")
	flag.Parse()
	s.Guarded = s.GuardColumn >= 0
	if out == "" || s.Inputs < 1 || s.Hidden < 1 || s.Outputs < 1 {
		fmt.Fprintln(os.Stderr, "mlpgen: -o and positive sizes are required")
		os.Exit(2)
	}
	if err := os.WriteFile(out, s.ONNX(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "mlpgen:", err)
		os.Exit(1)
	}
}
