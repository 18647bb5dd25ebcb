package system

import (
	"net"

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
