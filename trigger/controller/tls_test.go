package controller_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/spec"
)

// writePEM writes a self-signed certificate for 127.0.0.1 (server and
// client use, its own CA) and its key under dir as NAME.pem and
// NAME-key.pem.
func writePEM(t *testing.T, dir, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{name + ".pem": {Type: "CERTIFICATE", Bytes: der}, name + "-key.pem": {Type: "EC PRIVATE KEY", Bytes: kb}} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A Connection with auth.tls reaches a real nats-server that requires TLS
// and a client certificate: the CA, the certificate and the key are secret
// references to files in the secrets directory. Without the client
// certificate, or trusting another CA, the broker refuses it and the
// status says why.
func TestTLSConnectionWithAClientCertificate(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server must be installed (.ci/run starts the loopback one from it): %v", err)
	}
	secrets := t.TempDir()
	os.Chmod(secrets, 0o700)
	writePEM(t, secrets, "broker") // the broker's certificate, and the CA of clients
	writePEM(t, secrets, "other")  // a CA that signed nothing here
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cert, key := filepath.Join(secrets, "broker.pem"), filepath.Join(secrets, "broker-key.pem")
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir(),
		"--tlscert", cert, "--tlskey", key, "--tlscacert", cert, "--tlsverify")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "nats://127.0.0.1:" + strconv.Itoa(port)

	// The test's own client, with the same files, makes the streams.
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(ca)
	var nc *nats.Conn
	testutil.Eventually(t, 10*time.Second, func() bool {
		nc, err = nats.Connect(url, nats.Secure(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}))
		return err == nil
	}, "the TLS nats-server never answered")
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for name, subj := range map[string]string{"IN": "t.in", "OUT": "t.out", "DLQ": "t.dlq"} {
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatal(err)
		}
	}

	srv := testutil.StartServer(t, func(c *config.Config) { c.SecretsDir = secrets })
	srv.Push(t, "fraud-detector", "fraud_v1")
	r := &rig{t: t, srv: srv, ctx: context.Background()}
	connection := func(tlsSpec string) string {
		return `apiVersion: nimbus.dev/v1
kind: Connection
metadata: {name: secure}
spec: {nats: {url: "` + url + `", auth: {tls: ` + tlsSpec + `}}}
`
	}
	trig := `---
apiVersion: nimbus.dev/v1
kind: Trigger
metadata: {name: tls}
spec:
  service: fraud-detector
  source: {connection: secure, nats: {stream: IN, subject: t.in, durable: scorer}}
  sink: {connection: secure, nats: {subject: t.out}}
  deadLetter: {connection: secure, nats: {subject: t.dlq}}
  format: {input: {json: {fields: {x: [amount, merchant_risk, foreign, hour]}}}}
`
	full := `{caFrom: {file: broker.pem}, certFrom: {file: broker.pem}, keyFrom: {file: broker-key.pem}}`
	r.apply(connection(full) + trig)
	if c := ready(r.status("tls")); c.Reason != spec.ReasonRunning {
		t.Fatalf("with the client certificate: ready = %+v", c)
	}
	if _, err := js.Publish(context.Background(), "t.in", []byte(event(1))); err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(context.Background(), "OUT", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
	if err != nil || !strings.Contains(string(m.Data()), `"y":[`) {
		t.Fatalf("result over TLS: %v", err)
	}

	r.apply(connection(`{caFrom: {file: broker.pem}}`) + trig)
	if c := ready(r.status("tls")); c.Reason != spec.ReasonBrokerUnavailable || !strings.Contains(c.Message, url) {
		t.Errorf("no client certificate: ready = %+v", c)
	}
	r.apply(connection(`{caFrom: {file: other.pem}, certFrom: {file: broker.pem}, keyFrom: {file: broker-key.pem}}`) + trig)
	if c := ready(r.status("tls")); c.Reason != spec.ReasonBrokerUnavailable || !strings.Contains(c.Message, "certificate") {
		t.Errorf("another CA: ready = %+v", c)
	}
	r.apply(connection(`{caFrom: {file: missing.pem}}`) + trig)
	if c := ready(r.status("tls")); c.Reason != spec.ReasonSecretUnavailable || !strings.Contains(c.Message, "auth.tls.caFrom: secret file missing.pem: no such file in the secrets directory") {
		t.Errorf("missing file: ready = %+v", c)
	}
}
