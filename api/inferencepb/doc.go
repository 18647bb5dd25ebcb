// Package inferencepb holds the generated Go code for the Open Inference Protocol v2
// gRPC service (protobuf package "inference", service GRPCInferenceService), the
// wire format tritonclient and KServe clients speak. The .proto is written from the
// published KServe specification; the Go files are generated from it and committed.
// Regenerate with `go generate ./api/inferencepb` (needs protoc, protoc-gen-go and
// protoc-gen-go-grpc on PATH).
package inferencepb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative grpc_predict_v2.proto
