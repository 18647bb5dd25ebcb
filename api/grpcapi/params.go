package grpcapi

import (
	"encoding/json"
	"math"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/internal/errs"
)

// paramsFromProto converts OIP parameters to the map the serving layer uses: bool,
// int64, string, float64 (double_param) and uint64 (Triton's uint64_param). A
// parameter without a value is refused. where prefixes error messages.
func paramsFromProto(where string, m map[string]*pb.InferParameter) (map[string]any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(m))
	for k, p := range m {
		switch v := p.GetParameterChoice().(type) {
		case *pb.InferParameter_BoolParam:
			out[k] = v.BoolParam
		case *pb.InferParameter_Int64Param:
			out[k] = v.Int64Param
		case *pb.InferParameter_StringParam:
			out[k] = v.StringParam
		case *pb.InferParameter_DoubleParam:
			out[k] = v.DoubleParam
		case *pb.InferParameter_Uint64Param:
			out[k] = v.Uint64Param
		default:
			return nil, errs.New(errs.InvalidArgument, "%sparameter %q has no value", where, k)
		}
	}
	return out, nil
}

// paramsToProto is the inverse of paramsFromProto. It also accepts the other Go
// integer and float types and json.Number, which a REST-decoded map may hold. Integers
// go out as int64_param where they fit (every OIP client knows it); only uint64
// values above MaxInt64 use uint64_param. Other types are an internal error.
func paramsToProto(where string, m map[string]any) (map[string]*pb.InferParameter, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]*pb.InferParameter, len(m))
	for k, v := range m {
		p, ok := paramToProto(v)
		if !ok {
			return nil, errs.New(errs.Internal, "%sparameter %q has unsupported type %T", where, k, v)
		}
		out[k] = p
	}
	return out, nil
}

func paramToProto(v any) (*pb.InferParameter, bool) {
	i64 := func(x int64) *pb.InferParameter {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: x}}
	}
	f64 := func(x float64) *pb.InferParameter {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_DoubleParam{DoubleParam: x}}
	}
	switch x := v.(type) {
	case bool:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: x}}, true
	case string:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_StringParam{StringParam: x}}, true
	case int:
		return i64(int64(x)), true
	case int8:
		return i64(int64(x)), true
	case int16:
		return i64(int64(x)), true
	case int32:
		return i64(int64(x)), true
	case int64:
		return i64(x), true
	case uint8:
		return i64(int64(x)), true
	case uint16:
		return i64(int64(x)), true
	case uint32:
		return i64(int64(x)), true
	case uint:
		return paramToProto(uint64(x))
	case uint64:
		if x <= math.MaxInt64 {
			return i64(int64(x)), true
		}
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: x}}, true
	case float32:
		return f64(float64(x)), true
	case float64:
		return f64(x), true
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return i64(n), true
		}
		if f, err := x.Float64(); err == nil {
			return f64(f), true
		}
	}
	return nil, false
}
