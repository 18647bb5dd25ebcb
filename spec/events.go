package spec

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/events/format"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/secrets"
)

// Kinds of event-driven inference.
const (
	KindConnection = "Connection"
	KindTrigger    = "Trigger"
)

// Connection is where a broker is and how to authenticate to it; an admin
// declares it in a namespace for that namespace's Triggers.
type Connection struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata ObjectMeta     `json:"metadata" yaml:"metadata"`
	Spec     ConnectionSpec `json:"spec" yaml:"spec"`
}

// GetKind implements Object.
func (*Connection) GetKind() string { return KindConnection }

// GetMeta implements Object.
func (c *Connection) GetMeta() *ObjectMeta { return &c.Metadata }

// ConnectionSpec names exactly one bus.
type ConnectionSpec struct {
	NATS  *URLConnection   `json:"nats,omitempty" yaml:"nats,omitempty"`
	MQTT  *URLConnection   `json:"mqtt,omitempty" yaml:"mqtt,omitempty"`
	Redis *URLConnection   `json:"redis,omitempty" yaml:"redis,omitempty"`
	Kafka *KafkaConnection `json:"kafka,omitempty" yaml:"kafka,omitempty"`
}

// Bus is the bus a connection names ("" when it names none, or several).
func (s ConnectionSpec) Bus() string {
	return oneBus(s.NATS != nil, s.MQTT != nil, s.Redis != nil, s.Kafka != nil)
}

// oneBus names the one bus set among nats, mqtt, redis and kafka ("" when
// none or several are).
func oneBus(nats, mqtt, redis, kafka bool) string {
	bus := ""
	for name, set := range map[string]bool{"nats": nats, "mqtt": mqtt, "redis": redis, "kafka": kafka} {
		if set {
			if bus != "" {
				return ""
			}
			bus = name
		}
	}
	return bus
}

// URLConnection is a broker reached at one URL.
type URLConnection struct {
	URL  string          `json:"url" yaml:"url"`
	Auth *ConnectionAuth `json:"auth,omitempty" yaml:"auth,omitempty"`
}

// KafkaConnection is a Kafka cluster's seed brokers.
type KafkaConnection struct {
	Brokers []string        `json:"brokers" yaml:"brokers"`
	Auth    *ConnectionAuth `json:"auth,omitempty" yaml:"auth,omitempty"`
}

// ConnectionAuth names credentials by reference only.
type ConnectionAuth struct {
	TokenFrom    *secrets.Ref `json:"tokenFrom,omitempty" yaml:"tokenFrom,omitempty"`
	Username     string       `json:"username,omitempty" yaml:"username,omitempty"`
	PasswordFrom *secrets.Ref `json:"passwordFrom,omitempty" yaml:"passwordFrom,omitempty"`
	// TLS: the broker's CA and a client certificate, by reference (PEM).
	TLS *ConnectionTLS `json:"tls,omitempty" yaml:"tls,omitempty"`
}

// ConnectionTLS is how a connection verifies its broker and proves who it
// is: PEM files (or variables) by secret reference. Setting it makes the
// connection use TLS.
type ConnectionTLS struct {
	// CAFrom: the certificates the broker's is checked against (default:
	// the system's).
	CAFrom *secrets.Ref `json:"caFrom,omitempty" yaml:"caFrom,omitempty"`
	// CertFrom and KeyFrom: a client certificate and its key (together).
	CertFrom *secrets.Ref `json:"certFrom,omitempty" yaml:"certFrom,omitempty"`
	KeyFrom  *secrets.Ref `json:"keyFrom,omitempty" yaml:"keyFrom,omitempty"`
	// ServerName is the name the broker's certificate must carry (default:
	// the URL's host).
	ServerName string `json:"serverName,omitempty" yaml:"serverName,omitempty"`
}

// AuthOf is the auth of the connection's bus (nil without one).
func (s ConnectionSpec) AuthOf() *ConnectionAuth {
	switch {
	case s.NATS != nil:
		return s.NATS.Auth
	case s.MQTT != nil:
		return s.MQTT.Auth
	case s.Redis != nil:
		return s.Redis.Auth
	case s.Kafka != nil:
		return s.Kafka.Auth
	}
	return nil
}

// Trigger feeds a service from a source and publishes its results.
type Trigger struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata ObjectMeta     `json:"metadata" yaml:"metadata"`
	Spec     TriggerSpec    `json:"spec" yaml:"spec"`
	Status   *TriggerStatus `json:"status,omitempty" yaml:"status,omitempty"`
}

// TriggerStatus is what the Trigger controller observed.
type TriggerStatus struct {
	ObservedGeneration int64       `json:"observedGeneration,omitempty" yaml:"observedGeneration,omitempty"`
	Conditions         []Condition `json:"conditions,omitempty" yaml:"conditions,omitempty"`
	TriggerCounts      `json:",inline" yaml:",inline"`
	// Warnings are what the trigger runs with but should not (a core-NATS
	// sink: at-most-once).
	Warnings []string `json:"warnings,omitempty" yaml:"warnings,omitempty"`
}

// TriggerCounts are a trigger's counters since the server started, with
// its end-to-end latency (receipt to acknowledgement).
type TriggerCounts struct {
	Consumed     int64 `json:"consumed" yaml:"consumed"`
	Produced     int64 `json:"produced" yaml:"produced"`
	DeadLettered int64 `json:"deadLettered" yaml:"deadLettered"`
	Redelivered  int64 `json:"redelivered" yaml:"redelivered"`
	InFlight     int64 `json:"inFlight" yaml:"inFlight"`
	// Lag is the events waiting at the source, where the broker reports it
	// (-1: it does not).
	Lag          int64   `json:"lag" yaml:"lag"`
	LatencyP50Ms float64 `json:"latencyP50Ms,omitempty" yaml:"latencyP50Ms,omitempty"`
	LatencyP99Ms float64 `json:"latencyP99Ms,omitempty" yaml:"latencyP99Ms,omitempty"`
}

// Reasons of a Trigger's Ready condition.
const (
	ReasonRunning           = "Running"
	ReasonSuspended         = "Suspended"
	ReasonSourceMissing     = "SourceMissing"
	ReasonBrokerUnavailable = "BrokerUnavailable"
	ReasonConnectionMissing = "ConnectionMissing"
	ReasonServiceMissing    = "ServiceMissing"
	// ReasonSecretUnavailable: a credential a Connection references cannot
	// be resolved (a variable not set, a file missing) or used (not PEM).
	ReasonSecretUnavailable = "SecretUnavailable"
	ReasonInvalid           = "Invalid"
)

// AdminOnly reports whether only an admin of a namespace may create,
// change or delete resources of kind there (a Connection: where brokers
// are and with what credentials).
func AdminOnly(kind string) bool { return kind == KindConnection }

// GetKind implements Object.
func (*Trigger) GetKind() string { return KindTrigger }

// GetMeta implements Object.
func (t *Trigger) GetMeta() *ObjectMeta { return &t.Metadata }

// TriggerSpec is what a Trigger declares.
type TriggerSpec struct {
	// Service is an InferenceService, or model[@ref], of the namespace.
	Service    string          `json:"service" yaml:"service"`
	Source     TriggerEndpoint `json:"source" yaml:"source"`
	Sink       TriggerEndpoint `json:"sink" yaml:"sink"`
	DeadLetter TriggerEndpoint `json:"deadLetter" yaml:"deadLetter"`
	Format     *TriggerFormat  `json:"format,omitempty" yaml:"format,omitempty"`
	Fetch      *TriggerFetch   `json:"fetch,omitempty" yaml:"fetch,omitempty"`
	// Concurrency bounds the requests in flight (default 4).
	Concurrency int `json:"concurrency,omitempty" yaml:"concurrency,omitempty"`
	// Suspend stops fetching once in-flight work drains; the consumer stays.
	Suspend bool `json:"suspend,omitempty" yaml:"suspend,omitempty"`
	// KeepConsumer keeps the durable consumer (or group) when the Trigger
	// is deleted.
	KeepConsumer bool `json:"keepConsumer,omitempty" yaml:"keepConsumer,omitempty"`
}

// TriggerEndpoint is where events come from or go: a Connection of the
// namespace and the bus's own names.
type TriggerEndpoint struct {
	Connection string         `json:"connection" yaml:"connection"`
	NATS       *NATSEndpoint  `json:"nats,omitempty" yaml:"nats,omitempty"`
	MQTT       *MQTTEndpoint  `json:"mqtt,omitempty" yaml:"mqtt,omitempty"`
	Redis      *RedisEndpoint `json:"redis,omitempty" yaml:"redis,omitempty"`
	Kafka      *KafkaEndpoint `json:"kafka,omitempty" yaml:"kafka,omitempty"`
}

// NATSEndpoint: a JetStream stream and durable consumer (source), or a
// subject (sink; a stream must capture it unless Durable is "false": a
// core NATS subject, at most once).
type NATSEndpoint struct {
	Stream  string `json:"stream,omitempty" yaml:"stream,omitempty"`
	Subject string `json:"subject" yaml:"subject"`
	Durable string `json:"durable,omitempty" yaml:"durable,omitempty"`
	Create  bool   `json:"create,omitempty" yaml:"create,omitempty"`
}

// MQTTEndpoint: a topic at QoS 1.
type MQTTEndpoint struct {
	Topic    string `json:"topic" yaml:"topic"`
	ClientID string `json:"clientId,omitempty" yaml:"clientId,omitempty"`
}

// RedisEndpoint: a stream, and for a source its consumer group.
type RedisEndpoint struct {
	Stream   string `json:"stream" yaml:"stream"`
	Group    string `json:"group,omitempty" yaml:"group,omitempty"`
	Consumer string `json:"consumer,omitempty" yaml:"consumer,omitempty"`
	Create   bool   `json:"create,omitempty" yaml:"create,omitempty"`
}

// KafkaEndpoint: a topic, and for a source its consumer group.
type KafkaEndpoint struct {
	Topic  string `json:"topic" yaml:"topic"`
	Group  string `json:"group,omitempty" yaml:"group,omitempty"`
	Create bool   `json:"create,omitempty" yaml:"create,omitempty"`
}

// CoreNATS reports whether a sink endpoint publishes to core NATS (durable:
// false): delivery is at most once.
func (e TriggerEndpoint) CoreNATS() bool { return e.NATS != nil && e.NATS.Durable == "false" }

// Bus is the bus an endpoint names ("" when none or several).
func (e TriggerEndpoint) Bus() string {
	return oneBus(e.NATS != nil, e.MQTT != nil, e.Redis != nil, e.Kafka != nil)
}

// TriggerFormat maps events to requests and answers to results.
type TriggerFormat struct {
	Input  TriggerInput  `json:"input" yaml:"input"`
	Output TriggerOutput `json:"output" yaml:"output"`
}

// TriggerInput: a flat JSON object by field lists (input name → fields).
type TriggerInput struct {
	JSON        *JSONFields `json:"json,omitempty" yaml:"json,omitempty"`
	CloudEvents bool        `json:"cloudEvents,omitempty" yaml:"cloudEvents,omitempty"`
}

// JSONFields maps each model input to the event fields of its row.
type JSONFields struct {
	Fields map[string][]string `json:"fields" yaml:"fields"`
}

// TriggerOutput: result fields from output expressions, and input fields
// kept.
type TriggerOutput struct {
	JSON *JSONResult `json:"json,omitempty" yaml:"json,omitempty"`
}

// JSONResult is a result object: fields from expressions ("y[0]"), then
// the input's Keep fields copied.
type JSONResult struct {
	Fields map[string]string `json:"fields" yaml:"fields"`
	Keep   []string          `json:"keep,omitempty" yaml:"keep,omitempty"`
}

// TriggerFetch bounds one pull.
type TriggerFetch struct {
	Max     int               `json:"max,omitempty" yaml:"max,omitempty"`
	MaxWait registry.Duration `json:"maxWait,omitempty" yaml:"maxWait,omitempty"`
}

// Trigger defaults and bounds.
const (
	DefaultTriggerFetchMax     = 128
	DefaultTriggerFetchMaxWait = 5 * time.Millisecond
	DefaultTriggerConcurrency  = 4
	MaxTriggerFetch            = 10_000
	MaxTriggerFetchWait        = 10 * time.Second
	MaxTriggerConcurrency      = 1024
)

// DefaultTrigger fills fetch (128, 5ms) and concurrency (4).
func DefaultTrigger(t *TriggerSpec) {
	if t.Fetch == nil {
		t.Fetch = &TriggerFetch{}
	}
	if t.Fetch.Max == 0 {
		t.Fetch.Max = DefaultTriggerFetchMax
	}
	if t.Fetch.MaxWait == 0 {
		t.Fetch.MaxWait = registry.Duration(DefaultTriggerFetchMaxWait)
	}
	if t.Concurrency == 0 {
		t.Concurrency = DefaultTriggerConcurrency
	}
}

// ValidateConnection checks a connection; each problem names its field.
func ValidateConnection(s ConnectionSpec) []FieldError {
	var out []FieldError
	bad := func(field, format string, args ...any) {
		out = append(out, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	bus := s.Bus()
	if bus == "" {
		bad("spec", "name exactly one bus: nats, mqtt, redis or kafka")
		return out
	}
	checkURL := func(field string, u *URLConnection, schemes ...string) {
		p, err := url.Parse(u.URL)
		switch {
		case u.URL == "":
			bad(field+".url", "required, like %s://127.0.0.1", schemes[0])
		case err != nil || p.Host == "" || !slices.Contains(schemes, p.Scheme):
			bad(field+".url", "%q is not a %s URL", u.URL, strings.Join(schemes, " or "))
		case p.User != nil:
			bad(field+".url", "credentials do not go in the URL: name them in auth (tokenFrom, passwordFrom)")
		}
	}
	if a := s.AuthOf(); a != nil {
		field := "spec." + bus + ".auth"
		for name, ref := range map[string]*secrets.Ref{"tokenFrom": a.TokenFrom, "passwordFrom": a.PasswordFrom} {
			if ref != nil {
				if err := ref.Validate(); err != nil {
					bad(field+"."+name, "%s", errs.PublicMessage(err))
				}
			}
		}
		if a.PasswordFrom != nil && a.Username == "" && bus == "kafka" {
			bad(field+".username", "required with passwordFrom (SASL PLAIN)")
		}
		if a.TokenFrom != nil && bus == "kafka" {
			bad(field+".tokenFrom", "Kafka authenticates with username and passwordFrom (SASL PLAIN)")
		}
		if t := a.TLS; t != nil {
			for name, ref := range map[string]*secrets.Ref{"caFrom": t.CAFrom, "certFrom": t.CertFrom, "keyFrom": t.KeyFrom} {
				if ref != nil {
					if err := ref.Validate(); err != nil {
						bad(field+".tls."+name, "%s", errs.PublicMessage(err))
					}
				}
			}
			if (t.CertFrom == nil) != (t.KeyFrom == nil) {
				bad(field+".tls", "certFrom and keyFrom go together (a client certificate and its key)")
			}
			if bus == "mqtt" && !strings.HasPrefix(s.MQTT.URL, "ssl://") && !strings.HasPrefix(s.MQTT.URL, "mqtts://") {
				bad(field+".tls", "an MQTT connection with tls needs an ssl:// or mqtts:// url")
			}
			if bus == "redis" && !strings.HasPrefix(s.Redis.URL, "rediss://") {
				bad(field+".tls", "a Redis connection with tls needs a rediss:// url")
			}
		}
	}
	switch bus {
	case "nats":
		checkURL("spec.nats", s.NATS, "nats", "tls")
	case "mqtt":
		checkURL("spec.mqtt", s.MQTT, "tcp", "ssl", "mqtt", "mqtts")
	case "redis":
		checkURL("spec.redis", s.Redis, "redis", "rediss")
	case "kafka":
		if len(s.Kafka.Brokers) == 0 {
			bad("spec.kafka.brokers", "required: at least one host:port")
		}
		for i, b := range s.Kafka.Brokers {
			if _, port, ok := strings.Cut(b, ":"); !ok || port == "" || strings.Contains(b, "/") {
				bad(fmt.Sprintf("spec.kafka.brokers[%d]", i), "%q is not host:port", b)
			}
		}
	}
	slices.SortFunc(out, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	return out
}

// ValidateTrigger checks a trigger on its own; that its connections exist
// and name the endpoints' buses is checked on apply. Each problem names its
// field.
func ValidateTrigger(t TriggerSpec) []FieldError {
	var out []FieldError
	bad := func(field, format string, args ...any) {
		out = append(out, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if t.Service == "" {
		bad("spec.service", "required: an InferenceService or model[@ref] of the namespace")
	} else if _, _, err := ParseTarget(t.Service); err != nil {
		bad("spec.service", "%s", err.Error())
	}
	for _, ep := range []struct {
		field  string
		e      TriggerEndpoint
		source bool
	}{{"spec.source", t.Source, true}, {"spec.sink", t.Sink, false}, {"spec.deadLetter", t.DeadLetter, false}} {
		if ep.e.Connection == "" {
			bad(ep.field+".connection", "required: a Connection of the namespace")
		}
		switch ep.e.Bus() {
		case "":
			bad(ep.field, "name exactly one bus: nats, mqtt, redis or kafka")
		case "nats":
			n := ep.e.NATS
			if n.Subject == "" {
				bad(ep.field+".nats.subject", "required")
			}
			if ep.source && (n.Stream == "" || n.Durable == "") {
				bad(ep.field+".nats", "a source needs stream and durable (a JetStream durable pull consumer)")
			}
			if !ep.source && n.Durable != "" && n.Durable != "true" && n.Durable != "false" {
				bad(ep.field+".nats.durable", "a sink takes durable: false (core NATS, at-most-once) or nothing (a JetStream stream stores what it publishes), got %q", n.Durable)
			}
			if !ep.source && n.Stream != "" {
				bad(ep.field+".nats.stream", "a sink publishes to a subject; the stream that captures it is found by the subject")
			}
		case "mqtt":
			if ep.e.MQTT.Topic == "" {
				bad(ep.field+".mqtt.topic", "required")
			}
		case "redis":
			r := ep.e.Redis
			if r.Stream == "" {
				bad(ep.field+".redis.stream", "required")
			}
			if ep.source && r.Group == "" {
				bad(ep.field+".redis.group", "required for a source (a consumer group)")
			}
		case "kafka":
			k := ep.e.Kafka
			if k.Topic == "" {
				bad(ep.field+".kafka.topic", "required")
			}
			if ep.source && k.Group == "" {
				bad(ep.field+".kafka.group", "required for a source (a consumer group)")
			}
		}
	}
	if f := t.Format; f != nil {
		if in := f.Input.JSON; in != nil {
			if len(in.Fields) == 0 {
				bad("spec.format.input.json.fields", "map each model input to its event fields, like {x: [amount, merchant_risk]}")
			}
			for name, fields := range in.Fields {
				if len(fields) == 0 || len(fields) > format.MaxFields {
					bad("spec.format.input.json.fields."+name, "1..%d fields", format.MaxFields)
				}
			}
		}
		if res := f.Output.JSON; res != nil {
			if _, err := format.NewOutputs(res.Fields, res.Keep); err != nil {
				bad("spec.format.output.json", "%s", strings.TrimPrefix(err.Error(), "format: "))
			}
		}
	}
	if fe := t.Fetch; fe != nil {
		if fe.Max < 0 || fe.Max > MaxTriggerFetch {
			bad("spec.fetch.max", "must be 1..%d, got %d", MaxTriggerFetch, fe.Max)
		}
		if w := fe.MaxWait.D(); w < 0 || w > MaxTriggerFetchWait {
			bad("spec.fetch.maxWait", "must be at most %s, got %s", MaxTriggerFetchWait, w)
		}
	}
	if t.Concurrency < 0 || t.Concurrency > MaxTriggerConcurrency {
		bad("spec.concurrency", "must be 1..%d, got %d", MaxTriggerConcurrency, t.Concurrency)
	}
	slices.SortFunc(out, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	return out
}
