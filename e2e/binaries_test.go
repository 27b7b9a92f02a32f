package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/quotaq/quotaq/internal/wait"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The quotaq-worker and quotaq-enqueue binaries, built once per test binary
// into a temporary directory.
var bins struct {
	once            sync.Once
	dir             string
	worker, enqueue string
	err             error
}

func cleanupBinaries() {
	if bins.dir != "" {
		_ = os.RemoveAll(bins.dir)
	}
}

// binaries builds ./cmd/worker and ./cmd/enqueue (once) and returns their
// paths.
func binaries(t *testing.T) (worker, enqueue string) {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "quotaq-e2e-bin-")
		if bins.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", bins.dir+"/",
			"github.com/quotaq/quotaq/cmd/worker", "github.com/quotaq/quotaq/cmd/enqueue")
		if out, err := cmd.CombinedOutput(); err != nil {
			bins.err = fmt.Errorf("go build ./cmd/worker ./cmd/enqueue: %v\n%s", err, out)
			return
		}
		bins.worker, bins.enqueue = bins.dir+"/worker", bins.dir+"/enqueue"
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.worker, bins.enqueue
}

// proc is a running quotaq-worker.
type proc struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	logs    *wait.Buffer
	done    chan struct{}
	code    int
	metrics string // http://host:port, from the worker's log
}

var metricsLine = regexp.MustCompile(`metrics on http://([0-9.:]+)/metrics`)

// startWorker starts quotaq-worker with env (on top of a clean environment:
// only PATH and HOME are kept) and args, waits until it logs that it started
// and returns it. It is killed when the test ends, and its log is printed if
// the test failed.
func startWorker(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	bin, _ := binaries(t)
	p := &proc{t: t, name: name, logs: &wait.Buffer{}, done: make(chan struct{}), code: -1}
	p.cmd = exec.Command(bin, append([]string{"--metrics-addr", "127.0.0.1:0"}, args...)...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start worker %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() || os.Getenv("E2E_DEBUG") != "" {
			t.Logf("log of worker %s:\n%s", name, tail(p.logs.String(), 60+1000*len(os.Getenv("E2E_DEBUG"))))
		}
	})
	p.waitLog("quotaq-worker: started", 30*time.Second)
	if m := metricsLine.FindStringSubmatch(p.logs.String()); m != nil {
		p.metrics = "http://" + m[1]
	}
	return p
}

// waitLog waits until the worker's log holds s, or fails the test.
func (p *proc) waitLog(s string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.logs.String(), s) {
		select {
		case <-p.done:
			p.t.Fatalf("worker %s exited (code %d) before logging %q:\n%s", p.name, p.code, s, tail(p.logs.String(), 40))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("worker %s did not log %q within %s:\n%s", p.name, s, within, tail(p.logs.String(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL, as a crash or the OOM killer would, and waits.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// term sends SIGTERM and waits for the worker to exit; it returns the exit
// code.
func (p *proc) term(within time.Duration) int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.code
	case <-time.After(within):
		p.t.Fatalf("worker %s did not exit within %s of SIGTERM:\n%s", p.name, within, tail(p.logs.String(), 40))
		return -1
	}
}

// metric returns the sum of the worker's Prometheus samples named name
// (every label set), 0 when there are none.
func (p *proc) metric(name string) float64 {
	p.t.Helper()
	if p.metrics == "" {
		p.t.Fatalf("worker %s has no metrics address", p.name)
	}
	resp, err := http.Get(p.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// healthz returns the status code of the worker's /healthz (0 when it
// does not answer within 5 s, as a monitor with that timeout would see).
func (p *proc) healthz() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.metrics+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// enqueue runs quotaq-enqueue with env and args, stdin from in, and returns
// its output and exit code.
func enqueue(t *testing.T, env []string, in string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	_, bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdin = strings.NewReader(in)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("run quotaq-enqueue: %v", err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// mustEnqueue is enqueue that fails the test unless the exit code is 0.
func mustEnqueue(t *testing.T, env []string, in string, args ...string) string {
	t.Helper()
	out, errOut, code := enqueue(t, env, in, args...)
	if code != 0 {
		t.Fatalf("quotaq-enqueue %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, tail(out, 10), tail(errOut, 10))
	}
	return out
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually polls cond every 20ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s: after %s", what, time.Since(start).Round(time.Millisecond))
}
