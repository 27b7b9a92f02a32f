// Package redistest starts a real redis-server for tests.
//
// A package's tests share one server, started on a free loopback port the first
// time a test asks for it and stopped when the test binary exits (call Main from
// TestMain). Each test gets its own key prefix instead of a flushed database, so
// tests can run in parallel against the same server.
//
// When redis-server is not on PATH the tests that need it fail with an
// instruction to install it: under CI nothing that needs Redis may skip.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process started for tests.
type Server struct {
	Addr string // host:port on loopback
	Dir  string // its working directory (dump and AOF files)
	cmd  *exec.Cmd
	done chan struct{}
}

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
	prefixSeq  atomic.Int64
)

// Main runs the package's tests and then stops the shared server, if one was
// started. Use it from TestMain: os.Exit(redistest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
}

// Addr returns the address of the package's shared redis-server, starting it
// on first use. It fails the test when no server can be started.
func Addr(tb testing.TB) string {
	tb.Helper()
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "quotaq-redis-")
		if err != nil {
			sharedErr = err
			return
		}
		shared, sharedErr = Start(dir)
	})
	if sharedErr != nil {
		tb.Fatalf("redistest: %v", sharedErr)
	}
	return shared.Addr
}

// Client returns a client of the shared server and a key prefix unique to this
// test ("t<N>:"). The client is closed when the test ends.
func Client(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: Addr(tb)})
	tb.Cleanup(func() { _ = c.Close() })
	return c, Prefix(tb)
}

// Prefix returns a key prefix that no other test of this process uses.
func Prefix(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("t%d-%d", os.Getpid(), prefixSeq.Add(1))
}

// NewServer starts a redis-server of the test's own, in a temporary
// directory, with extra configuration lines ("maxmemory-policy allkeys-lru"),
// and stops it when the test ends. Use it for a server configured unlike the
// shared one, or one the test stops.
func NewServer(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	s, err := Start(tb.TempDir(), extra...)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Start runs redis-server on a free loopback port with its files in dir, plus
// any extra configuration lines ("appendonly yes"), and waits until it answers
// PING. Stop it with Stop.
func Start(dir string, extra ...string) (*Server, error) {
	return retryPortRace(func() (*Server, error) { return startOnce(dir, extra...) })
}

// retryPortRace runs start again, up to five times in all, while it fails
// because another process took the free port it picked before redis-server
// bound it (tests start servers in parallel).
func retryPortRace[T any](start func() (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		s, err := start()
		if err != nil && attempt < 4 && isAddrInUse(err) {
			continue
		}
		return s, err
	}
}

// isAddrInUse reports whether a server failed to start because its port was
// taken.
func isAddrInUse(err error) bool {
	return strings.Contains(err.Error(), "Address already in use")
}

func startOnce(dir string, extra ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (install it: apt-get install redis-server): %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	conf := []string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"save \"\"",
		"appendonly no",
		"protected-mode yes",
		"dir " + dir,
		"logfile " + filepath.Join(dir, "redis.log"),
	}
	conf = append(conf, extra...)
	confPath := filepath.Join(dir, fmt.Sprintf("redis-%d.conf", port))
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, confPath)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("redis-server on %s exited at start: %s", s.Addr, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %s: %v; log: %s", s.Addr, timeout, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	f, err := os.Open(filepath.Join(s.Dir, "redis.log"))
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, " | ")
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	<-s.done
}

// FreePort asks the kernel for a free TCP port on loopback.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
