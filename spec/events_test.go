package spec

import (
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/secrets"
)

func fields(fes []FieldError) string {
	var b strings.Builder
	for _, fe := range fes {
		b.WriteString(fe.Field + ": " + fe.Message + "\n")
	}
	return b.String()
}

func goodTrigger() TriggerSpec {
	return TriggerSpec{
		Service:    "fraud",
		Source:     TriggerEndpoint{Connection: "nats-main", NATS: &NATSEndpoint{Stream: "TXNS", Subject: "txns.new", Durable: "scorer"}},
		Sink:       TriggerEndpoint{Connection: "nats-main", NATS: &NATSEndpoint{Subject: "txns.scored"}},
		DeadLetter: TriggerEndpoint{Connection: "nats-main", NATS: &NATSEndpoint{Subject: "txns.dlq"}},
		Format: &TriggerFormat{
			Input:  TriggerInput{JSON: &JSONFields{Fields: map[string][]string{"x": {"amount", "merchant_risk"}}}},
			Output: TriggerOutput{JSON: &JSONResult{Fields: map[string]string{"score": "y[0]"}, Keep: []string{"id"}}},
		},
	}
}

func TestValidateTrigger(t *testing.T) {
	if fes := ValidateTrigger(goodTrigger()); len(fes) != 0 {
		t.Fatalf("a good trigger: %s", fields(fes))
	}
	for name, c := range map[string]struct {
		mutate func(*TriggerSpec)
		want   string
	}{
		"no service":        {func(s *TriggerSpec) { s.Service = "" }, "spec.service: required"},
		"bad service":       {func(s *TriggerSpec) { s.Service = "Fraud" }, "spec.service: target \"Fraud\""},
		"two buses":         {func(s *TriggerSpec) { s.Sink.Redis = &RedisEndpoint{Stream: "x"} }, "spec.sink: name exactly one bus"},
		"no connection":     {func(s *TriggerSpec) { s.DeadLetter.Connection = "" }, "spec.deadLetter.connection: required"},
		"no durable":        {func(s *TriggerSpec) { s.Source.NATS.Durable = "" }, "spec.source.nats: a source needs stream and durable"},
		"sink durable name": {func(s *TriggerSpec) { s.Sink.NATS.Durable = "scorer" }, `spec.sink.nats.durable: a sink takes durable: false (core NATS, at-most-once) or nothing`},
		"sink stream":       {func(s *TriggerSpec) { s.Sink.NATS.Stream = "OUT" }, "spec.sink.nats.stream: a sink publishes to a subject"},
		"redis no group":    {func(s *TriggerSpec) { s.Source = TriggerEndpoint{Connection: "r", Redis: &RedisEndpoint{Stream: "s"}} }, "spec.source.redis.group: required for a source"},
		"kafka no topic":    {func(s *TriggerSpec) { s.Sink = TriggerEndpoint{Connection: "k", Kafka: &KafkaEndpoint{}} }, "spec.sink.kafka.topic: required"},
		"bad expression":    {func(s *TriggerSpec) { s.Format.Output.JSON.Fields["score"] = "y[x]" }, `spec.format.output.json: result field "score"`},
		"empty fields":      {func(s *TriggerSpec) { s.Format.Input.JSON.Fields["x"] = nil }, "spec.format.input.json.fields.x: 1..4096 fields"},
		"fetch too big":     {func(s *TriggerSpec) { s.Fetch = &TriggerFetch{Max: 20000} }, "spec.fetch.max: must be 1..10000"},
		"concurrency":       {func(s *TriggerSpec) { s.Concurrency = -1 }, "spec.concurrency: must be 1..1024"},
		"mqtt no topic":     {func(s *TriggerSpec) { s.Sink = TriggerEndpoint{Connection: "m", MQTT: &MQTTEndpoint{}} }, "spec.sink.mqtt.topic: required"},
		"no bus at all":     {func(s *TriggerSpec) { s.Source = TriggerEndpoint{Connection: "n"} }, "spec.source: name exactly one bus"},
		"kept & computed":   {func(s *TriggerSpec) { s.Format.Output.JSON.Keep = []string{"score"} }, "both kept and computed"},
	} {
		s := goodTrigger()
		c.mutate(&s)
		if got := fields(ValidateTrigger(s)); !strings.Contains(got, c.want) {
			t.Errorf("%s: errors\n%swant one containing %q", name, got, c.want)
		}
	}
	s := goodTrigger()
	DefaultTrigger(&s)
	if s.Fetch.Max != 128 || s.Fetch.MaxWait.D().String() != "5ms" || s.Concurrency != 4 {
		t.Fatalf("defaults: %+v %d", s.Fetch, s.Concurrency)
	}
}

func TestValidateConnection(t *testing.T) {
	for _, good := range []ConnectionSpec{
		{NATS: &URLConnection{URL: "nats://127.0.0.1:4222"}},
		{MQTT: &URLConnection{URL: "tcp://127.0.0.1:1883"}},
		{Redis: &URLConnection{URL: "redis://127.0.0.1:6379/0"}},
		{Kafka: &KafkaConnection{Brokers: []string{"k1:9092", "k2:9092"}}},
		{NATS: &URLConnection{URL: "tls://n:4222", Auth: &ConnectionAuth{TLS: &ConnectionTLS{CAFrom: &secrets.Ref{File: "ca.pem"},
			CertFrom: &secrets.Ref{File: "c.pem"}, KeyFrom: &secrets.Ref{File: "k.pem"}}}}},
		{Kafka: &KafkaConnection{Brokers: []string{"k:9093"}, Auth: &ConnectionAuth{Username: "u", PasswordFrom: &secrets.Ref{Env: "NIMBUS_SECRET_P"}}}},
	} {
		if fes := ValidateConnection(good); len(fes) != 0 {
			t.Errorf("%+v: %s", good, fields(fes))
		}
	}
	for want, c := range map[string]ConnectionSpec{
		"spec: name exactly one bus":                   {},
		"spec: name exactly one bus: nats":             {NATS: &URLConnection{URL: "nats://a:1"}, Redis: &URLConnection{URL: "redis://a:1"}},
		"spec.nats.url: required":                      {NATS: &URLConnection{}},
		`spec.nats.url: "http://a:1" is not a nats`:    {NATS: &URLConnection{URL: "http://a:1"}},
		"spec.redis.url: credentials do not go in":     {Redis: &URLConnection{URL: "redis://u:p@a:6379"}},
		`spec.kafka.brokers[1]: "k2" is not host:port`: {Kafka: &KafkaConnection{Brokers: []string{"k1:9092", "k2"}}},
		"spec.kafka.brokers: required":                 {Kafka: &KafkaConnection{}},
		"spec.nats.auth.tls: certFrom and keyFrom go together": {NATS: &URLConnection{URL: "nats://a:1",
			Auth: &ConnectionAuth{TLS: &ConnectionTLS{CertFrom: &secrets.Ref{File: "c.pem"}}}}},
		"spec.nats.auth.tls.caFrom:": {NATS: &URLConnection{URL: "nats://a:1", Auth: &ConnectionAuth{TLS: &ConnectionTLS{CAFrom: &secrets.Ref{File: "../ca.pem"}}}}},
		"spec.mqtt.auth.tls: an MQTT connection with tls needs an ssl://": {MQTT: &URLConnection{URL: "tcp://a:1883",
			Auth: &ConnectionAuth{TLS: &ConnectionTLS{}}}},
		"spec.redis.auth.tls: a Redis connection with tls needs a rediss://": {Redis: &URLConnection{URL: "redis://a:1",
			Auth: &ConnectionAuth{TLS: &ConnectionTLS{}}}},
		"spec.kafka.auth.username: required with passwordFrom": {Kafka: &KafkaConnection{Brokers: []string{"k:1"},
			Auth: &ConnectionAuth{PasswordFrom: &secrets.Ref{Env: "NIMBUS_SECRET_P"}}}},
		"spec.kafka.auth.tokenFrom: Kafka authenticates with username": {Kafka: &KafkaConnection{Brokers: []string{"k:1"},
			Auth: &ConnectionAuth{TokenFrom: &secrets.Ref{Env: "NIMBUS_SECRET_T"}}}},
		"spec.nats.auth.passwordFrom:": {NATS: &URLConnection{URL: "nats://a:1", Auth: &ConnectionAuth{Username: "u", PasswordFrom: &secrets.Ref{}}}},
	} {
		if got := fields(ValidateConnection(c)); !strings.Contains(got, want) {
			t.Errorf("errors\n%swant one containing %q", got, want)
		}
	}
}

// A Model's warm-up sample is written as in an OIP request: numbers and
// booleans are its elements' text.
func TestDecodeWarmupSample(t *testing.T) {
	docs, fes := Decode("m.yaml", []byte(`apiVersion: nimbus.dev/v1
kind: Model
metadata: {name: m}
spec:
  serving:
    warmup:
      runs: 2
      inputs:
        - {name: x, datatype: FP32, shape: [1, 4], data: [0.3, 12, 1, 0]}
`))
	if len(fes) != 0 || len(docs) != 1 {
		t.Fatalf("decode: %v", fes)
	}
	w := docs[0].Object.(*Model).Spec.Serving.Warmup
	if w == nil || w.Runs != 2 || len(w.Inputs) != 1 || strings.Join(w.Inputs[0].Data, ",") != "0.3,12,1,0" || w.Inputs[0].Shape[1] != 4 {
		t.Fatalf("warm-up %+v", w)
	}
}
