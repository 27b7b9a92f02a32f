package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// buildCommands builds quotaq-worker and quotaq-enqueue from this module into
// dir, with the go command that runs this example.
func buildCommands(ctx context.Context, dir string) (worker, enqueue string, err error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("find the module (go env GOMOD): %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if _, err := os.Stat(filepath.Join(root, "cmd", "worker")); err != nil {
		return "", "", fmt.Errorf("run this from the quotaq repository (go run ./examples/distributed): %w", err)
	}
	worker, enqueue = filepath.Join(dir, "quotaq-worker"), filepath.Join(dir, "quotaq-enqueue")
	for bin, pkg := range map[string]string{worker: "./cmd/worker", enqueue: "./cmd/enqueue"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return worker, enqueue, nil
}

// childEnv is the environment of the programs this example starts: only
// what they need, so the caller's QUOTAQ_* or REDIS_* settings do not change
// the demo.
func childEnv(redisURL string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "REDIS_URL=" + redisURL}
}

// process is a worker process this example started.
type process struct {
	name    string
	cmd     *exec.Cmd
	metrics string // host:port of its /metrics
	done    chan error
}

// startWorker starts a quotaq-worker on redisURL with args, its log in logw.
func startWorker(bin, name, redisURL string, logw io.Writer, args ...string) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	metrics := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, append([]string{"--metrics-addr", metrics, "--per-tenant-metrics"}, args...)...)
	cmd.Env = childEnv(redisURL)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, metrics: metrics, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	// Ready when its /healthz answers (it pings Redis).
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("%s exited at start: %v", name, err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s: /healthz on %s did not answer within 30s", name, metrics)
		}
	}
}

// stop sends SIGTERM (a graceful shutdown) and waits; after 15 seconds it
// kills the process.
func (p *process) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// allowed reads, from the worker's /metrics, how many tasks of each tenant it
// let through (quotaq_worker_allowed_total).
func (p *process) allowed() map[string]int64 {
	out := map[string]int64{}
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := allowedLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err == nil {
			out[m[1]] += int64(v)
		}
	}
	return out
}

var allowedLine = regexp.MustCompile(`^quotaq_worker_allowed_total\{[^}]*tenant="([^"]*)"[^}]*\} (\S+)$`)

// enqueueCLI runs quotaq-enqueue with args and returns its output.
func enqueueCLI(ctx context.Context, bin, redisURL string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv(redisURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("quotaq-enqueue %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
