package controller

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/kafka"
	"github.com/nimbus-ai/nimbus/events/mqtt"
	"github.com/nimbus-ai/nimbus/events/natsjs"
	"github.com/nimbus-ai/nimbus/events/redisstream"
	"github.com/nimbus-ai/nimbus/secrets"
	"github.com/nimbus-ai/nimbus/spec"
)

// dialTimeout bounds connecting to a broker.
const dialTimeout = 5 * time.Second

// buses opens the endpoints of one trigger. Endpoints on one NATS or Redis
// Connection share its client; Kafka and MQTT adapters hold their own.
type buses struct {
	c      *Controller
	ns     string
	name   string
	conns  map[string]spec.ConnectionSpec
	nats   map[string]*nats.Conn
	redis  map[string]*redis.Client
	closer []func() error
}

func newBuses(c *Controller, ns, name string, conns map[string]spec.ConnectionSpec) *buses {
	return &buses{c: c, ns: ns, name: name, conns: conns, nats: map[string]*nats.Conn{}, redis: map[string]*redis.Client{}}
}

// errSecret marks a credential that cannot be resolved or used (status
// SecretUnavailable): not the broker's fault.
var errSecret = errors.New("secret unavailable")

// creds are a connection's resolved credentials.
type creds struct {
	user, password, token string
	// tls is set when the connection declares auth.tls.
	tls *tls.Config
}

func (b *buses) creds(a *spec.ConnectionAuth) (creds, error) {
	var out creds
	if a == nil {
		return out, nil
	}
	reveal := func(field string, ref *secrets.Ref) (string, error) {
		if ref == nil {
			return "", nil
		}
		if b.c.opts.Secrets == nil {
			return "", fmt.Errorf("auth.%s: %w: no secret resolver is configured", field, errSecret)
		}
		s, err := b.c.opts.Secrets.Resolve(*ref)
		if err != nil {
			return "", fmt.Errorf("auth.%s: %w: %w", field, errSecret, err)
		}
		return s.Reveal(), nil
	}
	var err error
	out.user = a.Username
	if out.token, err = reveal("tokenFrom", a.TokenFrom); err != nil {
		return out, err
	}
	if out.password, err = reveal("passwordFrom", a.PasswordFrom); err != nil {
		return out, err
	}
	if t := a.TLS; t != nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		ca, err := reveal("tls.caFrom", t.CAFrom)
		if err != nil {
			return out, err
		}
		if ca != "" {
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM([]byte(ca)) {
				return out, fmt.Errorf("auth.tls.caFrom: %w: %s holds no PEM certificate", errSecret, t.CAFrom)
			}
		}
		cert, err := reveal("tls.certFrom", t.CertFrom)
		if err != nil {
			return out, err
		}
		key, err := reveal("tls.keyFrom", t.KeyFrom)
		if err != nil {
			return out, err
		}
		if cert != "" || key != "" {
			pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
			if err != nil {
				return out, fmt.Errorf("auth.tls: %w: the client certificate (%s) and key (%s) do not load: %w", errSecret, t.CertFrom, t.KeyFrom, err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		out.tls = cfg
	}
	return out, nil
}

func (b *buses) dialer() *net.Dialer {
	if b.c.opts.Dialer != nil {
		d := *b.c.opts.Dialer
		if d.Timeout == 0 {
			d.Timeout = dialTimeout
		}
		return &d
	}
	return &net.Dialer{Timeout: dialTimeout}
}

func (b *buses) natsConn(name string, cs spec.ConnectionSpec) (*nats.Conn, error) {
	if nc := b.nats[name]; nc != nil {
		return nc, nil
	}
	cr, err := b.creds(cs.NATS.Auth)
	if err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name("nimbus trigger " + b.ns + "/" + b.name), nats.SetCustomDialer(b.dialer()),
		nats.Timeout(dialTimeout), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
	}
	if cr.token != "" {
		opts = append(opts, nats.Token(cr.token))
	}
	if cr.user != "" {
		opts = append(opts, nats.UserInfo(cr.user, cr.password))
	}
	if cr.tls != nil {
		opts = append(opts, nats.Secure(cr.tls))
	}
	nc, err := nats.Connect(cs.NATS.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w: %w", cs.NATS.URL, events.ErrUnavailable, err)
	}
	b.nats[name] = nc
	b.closer = append(b.closer, func() error { nc.Close(); return nil })
	return nc, nil
}

func (b *buses) redisClient(ctx context.Context, name string, cs spec.ConnectionSpec) (*redis.Client, error) {
	if rdb := b.redis[name]; rdb != nil {
		return rdb, nil
	}
	opt, err := redis.ParseURL(cs.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	cr, err := b.creds(cs.Redis.Auth)
	if err != nil {
		return nil, err
	}
	if cr.user != "" {
		opt.Username = cr.user
	}
	if p := cmp.Or(cr.password, cr.token); p != "" {
		opt.Password = p
	}
	if cr.tls != nil {
		t := cr.tls.Clone()
		if opt.TLSConfig != nil && t.ServerName == "" {
			t.ServerName = opt.TLSConfig.ServerName
		}
		opt.TLSConfig = t
	}
	d := b.dialer()
	opt.Dialer = d.DialContext
	if opt.TLSConfig != nil {
		// The dialer replaces go-redis's own, TLS included: wrap it.
		t := opt.TLSConfig
		opt.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialTLS(ctx, d, t, network, addr)
		}
	}
	opt.DialTimeout = dialTimeout
	rdb := redis.NewClient(opt)
	b.closer = append(b.closer, rdb.Close)
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("connect to Redis at %s: %w: %w", opt.Addr, events.ErrUnavailable, err)
	}
	b.redis[name] = rdb
	return rdb, nil
}

func (b *buses) kafkaOpts(cs spec.ConnectionSpec) ([]kgo.Opt, error) {
	cr, err := b.creds(cs.Kafka.Auth)
	if err != nil {
		return nil, err
	}
	d := b.dialer()
	dial := d.DialContext
	if cr.tls != nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialTLS(ctx, d, cr.tls, network, addr)
		}
	}
	opts := []kgo.Opt{kgo.Dialer(dial), kgo.ClientID("nimbus-" + b.ns + "-" + b.name)}
	switch {
	case cr.token != "":
		return nil, errors.New("auth.tokenFrom: Kafka authenticates with username and passwordFrom (SASL PLAIN)")
	case cr.user != "":
		opts = append(opts, kgo.SASL(plain.Auth{User: cr.user, Pass: cr.password}.AsMechanism()))
	}
	return opts, nil
}

// mqttCreds: a token is sent as the password.
func (b *buses) mqttCreds(cs spec.ConnectionSpec) (user, password string, tc *tls.Config, err error) {
	cr, err := b.creds(cs.MQTT.Auth)
	return cr.user, cmp.Or(cr.password, cr.token), cr.tls, err
}

// dialTLS dials through d (the egress rule's dialer) and then does the TLS
// handshake, naming the host dialled unless cfg names another.
func dialTLS(ctx context.Context, d *net.Dialer, cfg *tls.Config, network, addr string) (net.Conn, error) {
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := cfg.Clone()
	if c.ServerName == "" {
		c.ServerName, _, _ = net.SplitHostPort(addr)
	}
	conn := tls.Client(raw, c)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// clientID is the MQTT client id of one endpoint: the declared one, or one
// derived from the trigger (stable, so the persistent session survives a
// restart).
func (b *buses) clientID(declared, role string) string {
	if declared != "" {
		return declared
	}
	return "nimbus-" + b.ns + "-" + b.name + "-" + role
}

// source opens the trigger's source.
func (b *buses) source(ctx context.Context, ep spec.TriggerEndpoint) (events.Source, error) {
	cs := b.conns[ep.Connection]
	switch {
	case ep.NATS != nil:
		nc, err := b.natsConn(ep.Connection, cs)
		if err != nil {
			return nil, err
		}
		return natsjs.NewSource(ctx, nc, natsjs.SourceConfig{Stream: ep.NATS.Stream, Subject: ep.NATS.Subject, Durable: ep.NATS.Durable, Create: ep.NATS.Create})
	case ep.Redis != nil:
		rdb, err := b.redisClient(ctx, ep.Connection, cs)
		if err != nil {
			return nil, err
		}
		return redisstream.NewSource(ctx, rdb, redisstream.SourceConfig{Stream: ep.Redis.Stream, Group: ep.Redis.Group,
			Consumer: cmp.Or(ep.Redis.Consumer, "nimbus-"+b.name), Create: ep.Redis.Create})
	case ep.Kafka != nil:
		opts, err := b.kafkaOpts(cs)
		if err != nil {
			return nil, err
		}
		s, err := kafka.NewSource(ctx, kafka.SourceConfig{Brokers: cs.Kafka.Brokers, Topic: ep.Kafka.Topic, Group: ep.Kafka.Group, Create: ep.Kafka.Create, Options: opts})
		if err != nil {
			return nil, err
		}
		return s, nil
	case ep.MQTT != nil:
		user, pass, tc, err := b.mqttCreds(cs)
		if err != nil {
			return nil, err
		}
		s, err := mqtt.NewSource(ctx, mqtt.SourceConfig{Broker: cs.MQTT.URL, Topic: ep.MQTT.Topic, ClientID: b.clientID(ep.MQTT.ClientID, "source"),
			Username: user, Password: pass, Dialer: b.dialer(), TLSConfig: tc})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, errors.New("the source names no bus")
}

// sink opens a sink (role "sink" or "deadletter").
func (b *buses) sink(ctx context.Context, ep spec.TriggerEndpoint, role string) (events.Sink, error) {
	cs := b.conns[ep.Connection]
	var (
		s   events.Sink
		err error
	)
	switch {
	case ep.NATS != nil:
		nc, cerr := b.natsConn(ep.Connection, cs)
		if cerr != nil {
			return nil, cerr
		}
		if ep.CoreNATS() {
			s, err = natsjs.NewCoreSink(nc, ep.NATS.Subject)
		} else {
			s, err = natsjs.NewSink(ctx, nc, natsjs.SinkConfig{Subject: ep.NATS.Subject})
		}
	case ep.Redis != nil:
		rdb, cerr := b.redisClient(ctx, ep.Connection, cs)
		if cerr != nil {
			return nil, cerr
		}
		s, err = redisstream.NewSink(rdb, redisstream.SinkConfig{Stream: ep.Redis.Stream})
	case ep.Kafka != nil:
		opts, oerr := b.kafkaOpts(cs)
		if oerr != nil {
			return nil, oerr
		}
		var ks *kafka.Sink
		if ks, err = kafka.NewSink(ctx, kafka.SinkConfig{Brokers: cs.Kafka.Brokers, Topic: ep.Kafka.Topic, Options: opts}); err == nil {
			s = ks
		}
	case ep.MQTT != nil:
		user, pass, tc, cerr := b.mqttCreds(cs)
		if cerr != nil {
			return nil, cerr
		}
		var ms *mqtt.Sink
		if ms, err = mqtt.NewSink(ctx, mqtt.SinkConfig{Broker: cs.MQTT.URL, Topic: ep.MQTT.Topic, ClientID: b.clientID(ep.MQTT.ClientID, role),
			Username: user, Password: pass, Dialer: b.dialer(), TLSConfig: tc}); err == nil {
			s = ms
		}
	default:
		return nil, fmt.Errorf("the %s names no bus", role)
	}
	if err != nil {
		return nil, err
	}
	b.closer = append(b.closer, s.Close)
	return s, nil
}

// close closes every client opened, the last opened first.
func (b *buses) close() {
	for i := len(b.closer) - 1; i >= 0; i-- {
		if err := b.closer[i](); err != nil && !strings.Contains(err.Error(), "closed") {
			b.c.log.Debug("closing a broker client", "trigger", b.ns+"/"+b.name, "err", err)
		}
	}
	b.closer = nil
}
