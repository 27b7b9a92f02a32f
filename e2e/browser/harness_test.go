package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quotaq/quotaq/internal/wait"
)

// repoRoot is the quotaq module's directory.
const repoRoot = "../.."

// buildBinaries builds quotaq-worker and quotaq-enqueue from this checkout.
func buildBinaries(t *testing.T) (worker, enqueue string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/worker", "./cmd/enqueue")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/worker ./cmd/enqueue: %v\n%s", err, out)
	}
	return filepath.Join(dir, "worker"), filepath.Join(dir, "enqueue")
}

// cli runs quotaq-enqueue.
type cli struct {
	bin string
	env []string
}

func (c cli) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, c.env...)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("quotaq-enqueue %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

// status is quotaq-enqueue status --json, by tenant.
func (c cli) status(t *testing.T) map[string]standing {
	t.Helper()
	var all []standing
	if err := json.Unmarshal([]byte(c.run(t, "status", "--json")), &all); err != nil {
		t.Fatal(err)
	}
	m := map[string]standing{}
	for _, s := range all {
		m[s.Tenant] = s
	}
	return m
}

// standing is the part of quotaq-enqueue's --json the test compares.
type standing struct {
	Tenant string `json:"tenant"`
	Policy struct {
		Rate        float64 `json:"rate"`
		Burst       int64   `json:"burst"`
		Quota       int64   `json:"quota"`
		QuotaPeriod string  `json:"quota_period"`
		Explicit    bool    `json:"explicit"`
	} `json:"policy"`
	Tokens  int64 `json:"tokens"`
	Holds   int64 `json:"holds"`
	Booked  int64 `json:"booked"`
	Waiting struct {
		Turn  int `json:"for_their_turn"`
		Other int `json:"for_quota_or_pause"`
		Slot  int `json:"for_a_slot"`
		// by why they were put back: rate, upstream, quota, hold, ...
		ByCause map[string]int `json:"by_cause"`
	} `json:"waiting"`
	Quota *struct {
		Limit     int64 `json:"limit"`
		Used      int64 `json:"used"`
		Remaining int64 `json:"remaining"`
	} `json:"quota"`
	Tasks struct {
		Pending   int `json:"pending"`
		Scheduled int `json:"scheduled"`
		Active    int `json:"active"`
		Archived  int `json:"archived"`
	} `json:"tasks"`
}

// worker is a running quotaq-worker.
type worker struct {
	cmd  *exec.Cmd
	logs *wait.Buffer
	page string // the web page's address, from its log
}

var pageLine = regexp.MustCompile(`web page on (http://[0-9.:]+/ui/)`)

// startWorker starts quotaq-worker with a metrics address of its own and
// waits until it serves the web page.
func startWorker(t *testing.T, bin string, env []string, args ...string) *worker {
	t.Helper()
	w := &worker{logs: &wait.Buffer{}}
	w.cmd = exec.Command(bin, append([]string{"--metrics-addr", "127.0.0.1:0", "--echo-types", "echo"}, args...)...)
	w.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	w.cmd.Stdout, w.cmd.Stderr = w.logs, w.logs
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			_ = w.cmd.Process.Kill()
			_ = w.cmd.Wait()
		})
		if t.Failed() {
			var lines []string
			for _, l := range strings.Split(w.logs.String(), "\n") {
				if !strings.Contains(l, "quotaq-worker: echo") {
					lines = append(lines, l)
				}
			}
			t.Logf("worker log, without the tasks it ran:\n%s", strings.Join(lines, "\n"))
		}
	})
	wait.For(t, 30*time.Second, "the worker to serve its web page", func() bool {
		m := pageLine.FindStringSubmatch(w.logs.String())
		if m != nil {
			w.page = m[1]
		}
		return m != nil
	})
	return w
}

// chromium finds the browser: $QUOTAQ_CHROMIUM, else chromium on the PATH.
// Without one the test fails under CI and is skipped elsewhere, saying how
// to install it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("QUOTAQ_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on the PATH: install Debian's (apt-get install -y chromium; scripts/test.sh does it as root) or set QUOTAQ_CHROMIUM"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// newBrowser starts headless Chromium with the flags this kind of machine
// needs (no sandbox as root, no GPU, no calls home) and a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs chromedp actions with a deadline, failing the test on error.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page into v (a promise's
// value once it settles).
func eval(t *testing.T, ctx context.Context, js string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err == nil {
		err = json.Unmarshal(raw, v)
	}
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
}

// script runs JavaScript in the page as a step.
func script(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](js)
}

// until waits for cond, showing what it last saw when it times out.
func until(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last saw:\n%s", within, what, saw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rowsJS reads the table's rows as their cells' text.
const rowsJS = `[...document.querySelectorAll("#tenants tbody tr")].map(tr => [...tr.cells].map(td => td.textContent))`

// policyText is the policy as the page writes it (and quotaq-enqueue).
func policyText(s standing) string {
	p := s.Policy
	text := fmt.Sprintf("%v/s burst %d", p.Rate, p.Burst)
	if p.Quota > 0 {
		text += fmt.Sprintf(" quota %d", p.Quota)
		if p.QuotaPeriod != "0s" {
			text += " per " + p.QuotaPeriod
		}
	}
	if !p.Explicit {
		text += " (default)"
	}
	return text
}

// tableCells are the cells of a tenant's row that do not move with the
// clock (tokens, hold left, next due and drain time do), from the CLI.
func tableCells(s standing) []string {
	quota := "-"
	if s.Quota != nil {
		quota = fmt.Sprintf("%d/%d", s.Quota.Used, s.Quota.Limit)
	}
	return []string{s.Tenant, policyText(s), quota, fmt.Sprint(s.Holds),
		fmt.Sprintf("%d/%d/%d", s.Waiting.Turn, s.Waiting.Other, s.Waiting.Slot),
		fmt.Sprint(s.Tasks.Pending), fmt.Sprint(s.Tasks.Scheduled), fmt.Sprint(s.Tasks.Active), fmt.Sprint(s.Tasks.Archived)}
}

// pageCells picks the same cells from a row of the page.
func pageCells(row []string) []string {
	if len(row) < 13 {
		return row
	}
	return []string{row[0], row[1], row[3], row[5], row[6], row[9], row[10], row[11], row[12]}
}
