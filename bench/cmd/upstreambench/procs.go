package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quotaq/quotaq/internal/wait"
)

// binaries are quotaq-worker and quotaq-enqueue, built from the repository.
type binaries struct {
	dir, worker, enqueue string
	commit               string // the repository's HEAD, "+dirty" when it has changes
}

// build builds ./cmd/worker and ./cmd/enqueue of the quotaq module (the
// directory the bench module's replace points to) into a temporary
// directory.
func build() (*binaries, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/quotaq/quotaq").Output()
	if err != nil {
		return nil, fmt.Errorf("find the quotaq module (run inside bench/): go list -m: %w", err)
	}
	root := strings.TrimSpace(string(out))
	dir, err := os.MkdirTemp("", "quotaq-upstreambench-bin-")
	if err != nil {
		return nil, err
	}
	b := &binaries{dir: dir, worker: filepath.Join(dir, "quotaq-worker"), enqueue: filepath.Join(dir, "quotaq-enqueue")}
	for bin, pkg := range map[string]string{b.worker: "./cmd/worker", b.enqueue: "./cmd/enqueue"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("go build -o %s %s in %s: %w\n%s", bin, pkg, root, err, out)
		}
	}
	if head, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		b.commit = strings.TrimSpace(string(head))
		if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			b.commit += "+dirty"
		}
	}
	return b, nil
}

func (b *binaries) remove() { _ = os.RemoveAll(b.dir) }

// env is a clean environment for the binaries: PATH and HOME, then extra.
func env(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, extra...)
}

// enqueueCLI runs quotaq-enqueue with args and stdin, and fails with its
// output unless it exits 0.
func enqueueCLI(bin string, environ []string, stdin io.Reader, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env, cmd.Stdin = environ, stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("quotaq-enqueue %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

// ndjson is the quotaq-enqueue --file input of n http:call tasks of tenant,
// numbered from 0, each calling the upstream with its tenant and number.
func ndjson(u *upstream, tenant string, n int) io.Reader {
	var b bytes.Buffer
	for seq := range n {
		line, _ := json.Marshal(map[string]any{
			"tenant":  tenant,
			"type":    "http:call",
			"payload": map[string]any{"tenant": tenant, "url": u.callURL(tenant, seq)},
		})
		b.Write(line)
		b.WriteByte('\n')
	}
	return &b
}

// workerProc is a running quotaq-worker, whose counters are read from its
// /metrics every quarter second, so the last reading survives its exit.
type workerProc struct {
	name    string
	cmd     *exec.Cmd
	logs    *wait.Buffer
	done    chan struct{}
	metrics string // http://host:port/metrics

	mu      sync.Mutex
	samples []sample // last reading
	stop    chan struct{}
	stopped sync.WaitGroup
}

var metricsLine = regexp.MustCompile(`metrics on (http://[0-9.:]+/metrics)`)

// startWorker starts quotaq-worker with per-tenant metrics on a free
// loopback port and waits until it says it started.
func startWorker(bin, name string, environ []string, args ...string) (*workerProc, error) {
	w := &workerProc{name: name, logs: &wait.Buffer{}, done: make(chan struct{}), stop: make(chan struct{})}
	w.cmd = exec.Command(bin, append([]string{"--metrics-addr", "127.0.0.1:0", "--per-tenant-metrics"}, args...)...)
	w.cmd.Env = environ
	w.cmd.Stdout, w.cmd.Stderr = w.logs, w.logs
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %s: %w", name, err)
	}
	go func() { _ = w.cmd.Wait(); close(w.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.logs.String(), "quotaq-worker: started") {
		select {
		case <-w.done:
			return nil, fmt.Errorf("worker %s exited at start:\n%s", name, tail(w.logs.String(), 20))
		default:
		}
		if time.Now().After(deadline) {
			w.kill()
			return nil, fmt.Errorf("worker %s did not start within 30s:\n%s", name, tail(w.logs.String(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := metricsLine.FindStringSubmatch(w.logs.String())
	if m == nil {
		w.kill()
		return nil, fmt.Errorf("worker %s did not say where its metrics are:\n%s", name, tail(w.logs.String(), 20))
	}
	w.metrics = m[1]
	w.stopped.Add(1)
	go w.scrapeEvery(250 * time.Millisecond)
	return w, nil
}

func (w *workerProc) scrapeEvery(d time.Duration) {
	defer w.stopped.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		w.scrape()
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

// scrape reads /metrics and keeps the reading if it got one.
func (w *workerProc) scrape() {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(w.metrics)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	got := parseMetrics(resp.Body)
	if len(got) > 0 {
		w.mu.Lock()
		w.samples = got
		w.mu.Unlock()
	}
}

// last returns the last reading of the worker's counters.
func (w *workerProc) last() []sample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samples
}

// term reads the counters a last time, sends SIGTERM and waits for the
// worker to exit (SIGKILL after within).
func (w *workerProc) term(within time.Duration) {
	w.endScraping()
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(within):
		w.kill()
	}
}

func (w *workerProc) endScraping() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	w.stopped.Wait()
	w.scrape()
}

// kill sends SIGKILL and waits for the worker to exit.
func (w *workerProc) kill() {
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Kill()
	<-w.done
}

// exited reports whether the worker has exited.
func (w *workerProc) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// sample is one Prometheus sample: name{labels} value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads Prometheus text format, skipping comments and lines
// it does not understand. Label values must not hold '"' or ',' (task
// types and tenant ids here do not).
func parseMetrics(r io.Reader) []sample {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s := sample{name: line[:i], labels: map[string]string{}, value: v}
		if name, rest, ok := strings.Cut(line[:i], "{"); ok {
			s.name = name
			for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					s.labels[k] = strings.Trim(v, `"`)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// dequeues are a tenant's dequeues, from the workers' counters.
type dequeues struct {
	allowed     float64            // quotaq_worker_allowed_total: the task ran
	throttled   map[string]float64 // quotaq_worker_throttled_total by reason: not let start at once
	waited      float64            // quotaq_worker_waited_in_process_total: of those, waited in the worker and ran
	rethrottled float64            // quotaq_worker_rethrottled_total
}

// total is the dequeues the Throttler decided on: each ran (allowed) or was
// put back without running (throttled, less those that waited in the worker
// and ran). A task put back because the upstream answered 429 (reason
// "upstream") ran first and is counted once, as allowed.
func (d dequeues) total() float64 {
	n := d.allowed - d.waited
	for reason, v := range d.throttled {
		if reason != "upstream" {
			n += v
		}
	}
	return n
}

// dequeuesOf sums tenant's counters over the readings of several workers.
func dequeuesOf(tenant string, readings ...[]sample) dequeues {
	d := dequeues{throttled: map[string]float64{}}
	for _, r := range readings {
		for _, s := range r {
			if s.labels["tenant"] != tenant {
				continue
			}
			switch s.name {
			case "quotaq_worker_allowed_total":
				d.allowed += s.value
			case "quotaq_worker_throttled_total":
				d.throttled[s.labels["reason"]] += s.value
			case "quotaq_worker_waited_in_process_total":
				d.waited += s.value
			case "quotaq_worker_rethrottled_total":
				d.rethrottled += s.value
			}
		}
	}
	return d
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
