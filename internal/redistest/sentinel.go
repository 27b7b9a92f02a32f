package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a Redis master with one replica, watched by one Sentinel that
// fails over to the replica one second after the master stops answering.
type Sentinel struct {
	Master, Replica *Server
	Sentinel        *Server // the redis-server --sentinel process
	Name            string  // the master's name in Sentinel ("mymaster")
}

// NewSentinel starts a Sentinel setup in a temporary directory and stops it
// when the test ends.
func NewSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	s, err := StartSentinel(tb.TempDir())
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartSentinel starts a master, a replica that has finished its first
// sync, and a Sentinel (quorum 1, down-after 1 s, failover timeout 5 s)
// monitoring the master as "mymaster", each in a subdirectory of dir.
func StartSentinel(dir string) (*Sentinel, error) {
	s := &Sentinel{Name: "mymaster"}
	sub := func(name string) (string, error) {
		d := filepath.Join(dir, name)
		return d, os.MkdirAll(d, 0o700)
	}
	d, err := sub("master")
	if err != nil {
		return nil, err
	}
	if s.Master, err = Start(d); err != nil {
		return nil, fmt.Errorf("sentinel master: %w", err)
	}
	host, port, _ := net.SplitHostPort(s.Master.Addr)
	if d, err = sub("replica"); err != nil {
		s.Stop()
		return nil, err
	}
	if s.Replica, err = Start(d, "replicaof "+host+" "+port); err != nil {
		s.Stop()
		return nil, fmt.Errorf("sentinel replica: %w", err)
	}
	if err := s.waitReplicaSynced(30 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	if d, err = sub("sentinel"); err != nil {
		s.Stop()
		return nil, err
	}
	if s.Sentinel, err = startSentinelProcess(d, []string{
		"sentinel monitor mymaster " + host + " " + port + " 1",
		"sentinel down-after-milliseconds mymaster 1000",
		"sentinel failover-timeout mymaster 5000",
		"sentinel parallel-syncs mymaster 1",
	}); err != nil {
		s.Stop()
		return nil, err
	}
	// wait until the Sentinel has found the replica too
	deadline := time.Now().Add(30 * time.Second)
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr})
	defer c.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		reps, err := c.Replicas(ctx, "mymaster").Result()
		cancel()
		if err == nil && len(reps) == 1 {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("sentinel on %s did not discover the replica within 30s: %v %v", s.Sentinel.Addr, reps, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Sentinel) waitReplicaSynced(timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: s.Replica.Addr})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %s not in sync with %s within %s: %v", s.Replica.Addr, s.Master.Addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startSentinelProcess runs redis-server --sentinel with conf on a free port.
func startSentinelProcess(dir string, conf []string) (*Server, error) {
	return retryPortRace(func() (*Server, error) { return startSentinelOnce(dir, conf) })
}

func startSentinelOnce(dir string, conf []string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (install it: apt-get install redis-server): %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	lines := append([]string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"dir " + dir,
		"logfile " + filepath.Join(dir, "redis.log"),
	}, conf...)
	path := filepath.Join(dir, "sentinel.conf") // Sentinel rewrites it
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, path, "--sentinel")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server --sentinel: %w", err)
	}
	srv := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(srv.done) }()
	if err := srv.waitReady(10 * time.Second); err != nil {
		srv.Stop()
		return nil, fmt.Errorf("sentinel: %w", err)
	}
	return srv, nil
}

// MasterAddr asks the Sentinel which server is the master now.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr})
	defer c.Close()
	a, err := c.GetMasterAddrByName(ctx, s.Name).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

// Stop kills every process.
func (s *Sentinel) Stop() {
	for _, srv := range []*Server{s.Sentinel, s.Replica, s.Master} {
		if srv != nil {
			srv.Stop()
		}
	}
}
