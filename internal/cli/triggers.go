package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/spec"
)

// triggerHead and connectionHead are the get columns of Triggers and
// Connections.
func triggerHead(wide bool) []string {
	h := []string{"NAME", "SERVICE", "SOURCE", "READY", "REASON", "CONSUMED", "PRODUCED", "DLQ", "LAG", "AGE"}
	if wide {
		h = append(h, "IN FLIGHT", "REDELIVERED", "P50 MS", "P99 MS", "SINK", "MESSAGE")
	}
	return h
}

func connectionHead(bool) []string { return []string{"NAME", "BUS", "ENDPOINT", "AUTH", "AGE"} }

func triggerRow(o *spec.Trigger, now time.Time, wide bool) []string {
	st := o.Status
	if st == nil {
		st = &spec.TriggerStatus{}
	}
	ready := readyCondition(st.Conditions)
	row := []string{o.Metadata.Name, o.Spec.Service, formatEndpoint(o.Spec.Source), orDash(ready.Status), orDash(ready.Reason),
		strconv.FormatInt(st.Consumed, 10), strconv.FormatInt(st.Produced, 10), strconv.FormatInt(st.DeadLettered, 10),
		formatLag(st.Lag), formatAge(o.Metadata.CreationTimestamp, now)}
	if wide {
		row = append(row, strconv.FormatInt(st.InFlight, 10), strconv.FormatInt(st.Redelivered, 10),
			formatMs(st.LatencyP50Ms), formatMs(st.LatencyP99Ms), formatEndpoint(o.Spec.Sink), orDash(ready.Message))
	}
	return row
}

func connectionRow(o *spec.Connection, now time.Time) []string {
	return []string{o.Metadata.Name, orDash(o.Spec.Bus()), connectionEndpoint(o.Spec), connectionAuth(o.Spec), formatAge(o.Metadata.CreationTimestamp, now)}
}

func readyCondition(conds []spec.Condition) spec.Condition {
	for _, c := range conds {
		if c.Type == spec.ConditionReady {
			return c
		}
	}
	return spec.Condition{}
}

// formatLag is the lag, "-" where the broker does not report it.
func formatLag(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

func formatMs(v float64) string {
	if v <= 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// formatEndpoint is where a trigger reads or writes, in the bus's words:
// "nats-main: stream TXNS subject txns.new durable scorer".
func formatEndpoint(e spec.TriggerEndpoint) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	switch {
	case e.NATS != nil:
		add("stream", e.NATS.Stream)
		add("subject", e.NATS.Subject)
		add("durable", e.NATS.Durable)
	case e.Redis != nil:
		add("stream", e.Redis.Stream)
		add("group", e.Redis.Group)
	case e.Kafka != nil:
		add("topic", e.Kafka.Topic)
		add("group", e.Kafka.Group)
	case e.MQTT != nil:
		add("topic", e.MQTT.Topic)
	}
	return orDash(e.Connection) + ": " + orDash(strings.Join(parts, " "))
}

func connectionEndpoint(s spec.ConnectionSpec) string {
	switch {
	case s.NATS != nil:
		return spec.RedactURI(s.NATS.URL)
	case s.MQTT != nil:
		return spec.RedactURI(s.MQTT.URL)
	case s.Redis != nil:
		return spec.RedactURI(s.Redis.URL)
	case s.Kafka != nil:
		return strings.Join(s.Kafka.Brokers, ",")
	}
	return "-"
}

// connectionAuth names how a connection authenticates, never a secret:
// "token from env NIMBUS_SECRET_NATS", "user alice, password from file …".
func connectionAuth(s spec.ConnectionSpec) string {
	var a *spec.ConnectionAuth
	switch {
	case s.NATS != nil:
		a = s.NATS.Auth
	case s.MQTT != nil:
		a = s.MQTT.Auth
	case s.Redis != nil:
		a = s.Redis.Auth
	case s.Kafka != nil:
		a = s.Kafka.Auth
	}
	if a == nil {
		return "-"
	}
	var parts []string
	if a.TokenFrom != nil {
		parts = append(parts, "token from "+a.TokenFrom.String())
	}
	if a.Username != "" {
		parts = append(parts, "user "+a.Username)
	}
	if a.PasswordFrom != nil {
		parts = append(parts, "password from "+a.PasswordFrom.String())
	}
	return orDash(strings.Join(parts, ", "))
}

// describeTrigger writes what a Trigger reads, scores and writes, and what
// it counted.
func describeTrigger(t *table, o *spec.Trigger) {
	s := o.Spec
	t.row("Service:", s.Service)
	t.row("Source:", s.Source.Bus()+" "+formatEndpoint(s.Source))
	t.row("Sink:", s.Sink.Bus()+" "+formatEndpoint(s.Sink))
	t.row("Dead letters:", s.DeadLetter.Bus()+" "+formatEndpoint(s.DeadLetter))
	t.row("Format:", formatTriggerFormat(s.Format))
	fetch := "-"
	if s.Fetch != nil {
		fetch = fmt.Sprintf("max %d, maxWait %s", s.Fetch.Max, s.Fetch.MaxWait.D())
	}
	t.row("Fetch:", fetch, "Concurrency:", strconv.Itoa(s.Concurrency))
	t.row("Suspend:", strconv.FormatBool(s.Suspend), "KeepConsumer:", strconv.FormatBool(s.KeepConsumer))
	st := o.Status
	if st == nil {
		st = &spec.TriggerStatus{}
	}
	t.row("")
	t.row("Counts:", "(since the server started)")
	t.row("  Consumed:", strconv.FormatInt(st.Consumed, 10), "Produced:", strconv.FormatInt(st.Produced, 10),
		"Dead-lettered:", strconv.FormatInt(st.DeadLettered, 10))
	t.row("  In flight:", strconv.FormatInt(st.InFlight, 10), "Redelivered:", strconv.FormatInt(st.Redelivered, 10), "Lag:", formatLag(st.Lag))
	t.row("  Latency p50:", formatMs(st.LatencyP50Ms)+" ms", "p99:", formatMs(st.LatencyP99Ms)+" ms")
	if len(st.Warnings) > 0 {
		t.row("")
		t.row("Warnings:")
		for _, w := range st.Warnings {
			t.row("  " + w)
		}
	}
}

func formatTriggerFormat(f *spec.TriggerFormat) string {
	if f == nil || f.Input.JSON == nil {
		s := "OIP v2 JSON requests in, responses out"
		if f != nil && f.Input.CloudEvents {
			s += " (CloudEvents structured mode)"
		}
		return s
	}
	var in []string
	for name, fields := range f.Input.JSON.Fields {
		in = append(in, name+"=["+strings.Join(fields, ",")+"]")
	}
	out := "each output under its name"
	if r := f.Output.JSON; r != nil {
		var fs []string
		for k, v := range r.Fields {
			fs = append(fs, k+"="+v)
		}
		out = strings.Join(sorted(fs), ",")
		if len(r.Keep) > 0 {
			out += " keep " + strings.Join(r.Keep, ",")
		}
	}
	s := "flat JSON " + strings.Join(sorted(in), " ") + " -> " + out
	if f.Input.CloudEvents {
		s += " (CloudEvents structured mode)"
	}
	return s
}

func describeConnection(t *table, o *spec.Connection) {
	t.row("Bus:", orDash(o.Spec.Bus()))
	t.row("Endpoint:", connectionEndpoint(o.Spec))
	t.row("Auth:", connectionAuth(o.Spec))
}

func sorted(s []string) []string { slices.Sort(s); return s }
