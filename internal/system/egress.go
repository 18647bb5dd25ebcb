package system

import (
	"fmt"
	"net"
	"os"

	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/egress"
	"github.com/nimbus-ai/nimbus/secrets"
	"github.com/nimbus-ai/nimbus/spec/source"
)

// listen binds the REST and (when configured) gRPC listeners.
func (s *System) listen() error {
	var err error
	if s.httpLn, err = net.Listen("tcp", s.Config.HTTPAddr); err != nil {
		return fmt.Errorf("listen on http address %s: %w", s.Config.HTTPAddr, err)
	}
	if s.Config.GRPCAddr != "" {
		if s.grpcLn, err = net.Listen("tcp", s.Config.GRPCAddr); err != nil {
			return fmt.Errorf("listen on grpc address %s: %w", s.Config.GRPCAddr, err)
		}
	}
	return nil
}

// listenAddrs are the bound listener addresses.
func (s *System) listenAddrs() []net.Addr {
	var out []net.Addr
	for _, ln := range []net.Listener{s.httpLn, s.grpcLn} {
		if ln != nil {
			out = append(out, ln.Addr())
		}
	}
	return out
}

// EgressPolicy is the egress rule of a server configured with allow (nil:
// unset) and listening on addrs: the configured ranges when set, else
// loopback while every listener is on loopback (a laptop), else none.
func EgressPolicy(allow []string, addrs []net.Addr) (*egress.Policy, error) {
	if allow != nil {
		ps, err := egress.ParseAllow(allow...)
		if err != nil {
			return nil, fmt.Errorf("egressAllow: %w", err)
		}
		return egress.New(ps...), nil
	}
	if len(addrs) == 0 {
		return egress.New(), nil
	}
	for _, a := range addrs {
		ta, ok := a.(*net.TCPAddr)
		if !ok || !ta.IP.IsLoopback() {
			return egress.New(), nil
		}
	}
	return egress.New(egress.Loopback...), nil
}

// newFetcher builds the artifact fetcher: file:// under the source dir, https://
// under the egress rule, tokens from the secrets resolver.
func (s *System) newFetcher() (apply.Fetcher, error) {
	pol, err := EgressPolicy(s.Config.EgressAllow, s.listenAddrs())
	if err != nil {
		return nil, err
	}
	how := "configured (egressAllow)"
	if s.Config.EgressAllow == nil {
		how = "default for these listeners"
	}
	s.Log.Info("egress rule for connections made on a caller's behalf", "allows", pol.String(), "rule", how)
	res, err := secrets.NewResolver(secrets.Options{Dir: s.Config.SecretsDir})
	if err != nil {
		return nil, fmt.Errorf("secretsDir: %w", err)
	}
	if s.Config.SecretsDir != "" {
		s.warnLoosePermissions(s.Config.SecretsDir)
	}
	s.egress, s.secrets = pol, res
	return NewFetcher(source.New(source.Options{
		AllowedDir: s.Config.SourceDir, MaxBytes: s.Config.MaxBlobBytes, Deadline: s.Config.SourceFetchTimeout,
		Egress: pol, Secrets: res,
	})), nil
}

// warnLoosePermissions logs when others than the server's user may read the
// secrets directory.
func (s *System) warnLoosePermissions(dir string) {
	st, err := os.Stat(dir)
	if err == nil && st.Mode().Perm()&0o077 != 0 {
		s.Log.Warn("the secrets directory is readable by other users; chmod 700 it", "dir", dir, "mode", st.Mode().Perm().String())
	}
}
