package e2e

import (
	"bufio"
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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and localhost with
// the given serial to dir/cert.pem and dir/key.pem.
func writeCert(t *testing.T, dir string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "nimbus test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
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
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Written to temp names and renamed, as a certificate manager does.
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: kb}} {
		if err := os.WriteFile(path+".new", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// TestTLS: REST and gRPC over TLS with tokens; plain text to a TLS port is
// refused; a renewed certificate is served without a restart; the CLI trusts a
// CA file.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, 1)
	srv := testutil.StartServer(t, func(c *config.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("URL %s", srv.URL)
	}
	mustCLI(t, srv, "--ca-file", certFile, "models", "push", testutil.Model("mlp"), "--name", "m", "--alias", "champion")
	if code, _, body := do(t, "POST", srv.URL+"/v2/models/m/infer", "application/json", []byte(mlpRequest)); code != 200 {
		t.Fatalf("infer over TLS: %d %s", code, body)
	}
	// Plain HTTP to the TLS port.
	plain := strings.Replace(srv.URL, "https://", "http://", 1)
	resp, err := http.Get(plain + "/v2/health/ready")
	if err != nil {
		t.Fatal(err)
	}
	b := new(strings.Builder)
	bufio.NewReader(resp.Body).WriteTo(b)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(b.String(), "HTTP request to an HTTPS server") {
		t.Fatalf("plain HTTP to the TLS port: %d %s", resp.StatusCode, b)
	}
	// A client that does not trust the certificate is refused by the handshake.
	if _, err := http.Get(srv.URL + "/v2/health/ready"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted certificate: %v", err)
	}
	// gRPC over TLS with the token; plain text fails.
	tlsConn, err := grpc.NewClient(srv.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(srv.TLSConfig())),
		grpc.WithPerRPCCredentials(testutil.GRPCToken(srv.Token)))
	if err != nil {
		t.Fatal(err)
	}
	defer tlsConn.Close()
	if _, err := pb.NewGRPCInferenceServiceClient(tlsConn).ModelMetadata(context.Background(), &pb.ModelMetadataRequest{Name: "m"}); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}
	plainConn, err := grpc.NewClient(srv.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plainConn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pb.NewGRPCInferenceServiceClient(plainConn).ServerLive(ctx, &pb.ServerLiveRequest{}); err == nil {
		t.Fatal("plain-text gRPC to the TLS port answered")
	}
	// Renewal: new files in place; the server serves the new certificate
	// (checked at most once a second) without a restart.
	writeCert(t, dir, 2)
	later := time.Now().Add(time.Minute) // whatever the file system's time granularity
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	serial := func() int64 {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL, "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the serial only
		if err != nil {
			return 0
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return serial() == 2 }, "the renewed certificate was never served")
}
