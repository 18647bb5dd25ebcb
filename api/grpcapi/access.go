package grpcapi

import (
	"github.com/nimbus-ai/nimbus/auth"
)

// AccessRules is what each method NewGRPCServer and Register serve needs: the
// health checks are open, the rest need a token. A method missing here is
// refused by auth.Guard, so a service added later cannot be served unguarded.
func AccessRules() auth.GRPCRules {
	const svc = "/" + ServiceName + "/"
	metadata := auth.Needs(auth.PermMetadata)
	return auth.GRPCRules{
		Methods: map[string]auth.Rule{
			svc + "ServerLive":     auth.Open,
			svc + "ServerReady":    auth.Open,
			svc + "ServerMetadata": auth.NeedsAny(auth.PermMetadata),
			svc + "ModelReady":     metadata,
			svc + "ModelMetadata":  metadata,
			svc + "ModelInfer":     auth.Needs(auth.PermInfer),

			"/grpc.health.v1.Health/Check": auth.Open,
			"/grpc.health.v1.Health/Watch": auth.Open,
			"/grpc.health.v1.Health/List":  auth.Open,
			// Reflection describes the public OIP schema, but only to callers
			// with a token: it also lists what the server runs.
			"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      auth.Authenticated,
			"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": auth.Authenticated,
		},
		NSOf: namespace,
	}
}
