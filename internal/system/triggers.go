package system

import (
	"context"
	"fmt"
	"net"

	"gopkg.in/yaml.v3"

	"github.com/nimbus-ai/nimbus/registry"

	"github.com/nimbus-ai/nimbus/spec"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/trigger/controller"
)

// setupTriggers builds the Trigger controller: triggers feed the router
// (the path of REST and gRPC requests) and reach brokers through the
// egress rule's dialer, with the credentials their Connections reference.
func (s *System) setupTriggers(h hooks) {
	s.Triggers = controller.New(controller.Options{
		Resources: s.Store.(spec.ResourceStore), Services: s.Router, Secrets: s.secrets,
		Dialer: s.egress.Dialer(net.Dialer{}), Metrics: s.Metrics, Clock: h.clock, Logger: s.Log,
	})
	s.Metrics.SetTriggerLevels(func() []telemetry.TriggerLevel {
		var out []telemetry.TriggerLevel
		s.Triggers.Levels(func(ns, name string, c spec.TriggerCounts) {
			out = append(out, telemetry.TriggerLevel{Namespace: ns, Name: name, InFlight: c.InFlight, Lag: c.Lag})
		})
		return out
	})
}

// applyServerConnections declares the config file's connections: each a
// kind: Connection applied as the server (an admin), in one apply, so a bad
// entry changes nothing and fails the start naming its entry and field.
func (s *System) applyServerConnections(ctx context.Context) error {
	if len(s.Config.Connections) == 0 {
		return nil
	}
	files := make([]spec.File, 0, len(s.Config.Connections))
	for i, c := range s.Config.Connections {
		ns := c.Namespace
		if ns == "" {
			ns = registry.DefaultNamespace
		}
		doc, err := yaml.Marshal(map[string]any{
			"apiVersion": spec.APIVersion, "kind": spec.KindConnection,
			"metadata": map[string]any{"name": c.Name, "namespace": ns}, "spec": c.Bus,
		})
		if err != nil {
			return fmt.Errorf("connections[%d]: %w", i, err)
		}
		files = append(files, spec.File{Name: fmt.Sprintf("config connections[%d]", i), Content: string(doc)})
	}
	_, err := s.Resources.Apply(ctx, spec.Request{Files: files, Actor: "server", Source: "config", AppliedBy: appliedByServer})
	if err != nil {
		return fmt.Errorf("connections: %w", err)
	}
	return nil
}
