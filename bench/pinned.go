package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Pinning separates the cores: Nimbus (`bin/nimbus server`, a child process)
// and the bare servers (a child nimbusbench -serve-bare) run on ServerCPUs,
// while the benchmark process — the load-generating clients and the raw runs —
// runs on ClientCPUs. On a 2-core box that is one core each: what a
// server is worth when its load generator does not take its core.
type Pinning struct {
	ServerCPUs string // taskset CPU list, e.g. "0"
	ClientCPUs string // e.g. "1"; the caller pins this process (nimbusbench re-executes itself under taskset)
	Binary     string // bin/nimbus
	Self       string // this executable, for -serve-bare
}

// startChildren starts Nimbus (on dir) and the bare servers as children
// under taskset -c ServerCPUs; e.stop stops them and removes dir.
func (e *env) startChildren(ctx context.Context, pin Pinning, dir string) error {
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return fmt.Errorf("pinned runs need taskset (apt-get install -y util-linux): %w", err)
	}
	prefix := []string{taskset, "-c", pin.ServerCPUs}
	srv, err := StartServer(ctx, ServerOptions{Binary: pin.Binary, DataDir: dir, ORTLib: e.libPath, MemoryBudget: "0", GRPC: true, Prefix: prefix})
	if err != nil {
		return err
	}
	bare, stopBare, err := startBareChild(ctx, append(prefix, pin.Self, "-serve-bare"))
	if err != nil {
		srv.Stop()
		return err
	}
	e.stop = func() error {
		stopBare()
		err := srv.Stop()
		os.RemoveAll(dir)
		return err
	}
	e.bare = bare
	e.url, e.token, e.grpcAddr = srv.URL, srv.Token, srv.GRPCAddr
	return nil
}

// bareAddrs is the line a -serve-bare child prints when it listens.
type bareAddrs struct {
	HTTP string `json:"http"`
	GRPC string `json:"grpc"`
}

// startBareChild runs argv (nimbusbench -serve-bare under taskset) and reads
// where its servers listen. stop ends it.
func startBareChild(ctx context.Context, argv []string) (*bareServers, func(), error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the bare servers: %w", err)
	}
	stop := func() {
		stdin.Close() // the child exits when its stdin closes
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	line := make(chan bareAddrs, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var a bareAddrs
			if json.Unmarshal(sc.Bytes(), &a) == nil && a.HTTP != "" {
				line <- a
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case a := <-line:
		return &bareServers{httpURL: a.HTTP, grpcAddr: a.GRPC, remote: true}, stop, nil
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	stop()
	return nil, nil, fmt.Errorf("the bare servers did not report their addresses")
}

// ServeBare is the child side of a pinned run (nimbusbench -serve-bare): it
// starts the bare servers with their control path, prints their addresses as
// one JSON line on stdout, and serves until stdin closes.
func ServeBare() error {
	b, err := startBareWith(true)
	if err != nil {
		return err
	}
	defer b.close()
	if err := json.NewEncoder(os.Stdout).Encode(bareAddrs{HTTP: b.httpURL, GRPC: b.grpcAddr}); err != nil {
		return err
	}
	io.Copy(io.Discard, os.Stdin)
	return nil
}
