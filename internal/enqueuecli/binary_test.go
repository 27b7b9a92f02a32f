package enqueuecli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

// These tests run the built quotaq-enqueue binary against a real
// redis-server, as a user would.

func TestBinaryBulkCountArrivesIntact(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const n = 20000
	code, out, errOut := f.exec("", "--tenant", "bulk-acme", "--type", "report:build", "--payload", `{"k":"v"}`,
		"--count", fmt.Sprint(n), "--queue", f.queue)
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !regexp.MustCompile(`^enqueued 20000 tasks in \S+ \(\d+ tasks/s\)\n$`).MatchString(out) {
		t.Errorf("final line %q, want how many and how fast", out)
	}
	if errOut != "" {
		t.Errorf("stderr %q, want nothing (no terminal, no progress bar)", errOut)
	}
	tasks := f.list(f.queue, asynq.TaskStatePending)
	if len(tasks) != n {
		t.Fatalf("%d pending tasks, want %d", len(tasks), n)
	}
	ids := make(map[string]bool, n)
	for _, ti := range tasks {
		ids[ti.ID] = true
		if ti.Headers["tenant"] != "bulk-acme" || ti.Type != "report:build" || string(ti.Payload) != `{"k":"v"}` {
			t.Fatalf("task %s: tenant %q type %q payload %q", ti.ID, ti.Headers["tenant"], ti.Type, ti.Payload)
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct task ids, want %d", len(ids), n)
	}
}

func TestBinaryNDJSONTenantsArriveIntact(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tenants := []string{"acme", "beta corp", "ümlaut:{x}"}
	const per = 1000
	var b strings.Builder
	for i := range per {
		for _, tn := range tenants {
			line, _ := json.Marshal(map[string]any{"tenant": tn, "type": "email:send", "payload": map[string]any{"owner": tn, "i": i}})
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	path := filepath.Join(t.TempDir(), "tasks.ndjson")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := f.exec("", "--file", path, "--queue", f.queue, "--json")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var sum struct{ Enqueued int }
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Enqueued != per*len(tenants) {
		t.Errorf("summary %q (%v), want %d enqueued", out, err, per*len(tenants))
	}
	perTenant := map[string]map[int]bool{}
	for _, ti := range f.list(f.queue, asynq.TaskStatePending) {
		var p struct {
			Owner string
			I     int
		}
		if err := json.Unmarshal(ti.Payload, &p); err != nil {
			t.Fatalf("payload %q: %v", ti.Payload, err)
		}
		if p.Owner != ti.Headers["tenant"] {
			t.Fatalf("task %s: header tenant %q but payload owner %q", ti.ID, ti.Headers["tenant"], p.Owner)
		}
		if perTenant[p.Owner] == nil {
			perTenant[p.Owner] = map[int]bool{}
		}
		perTenant[p.Owner][p.I] = true
	}
	for _, tn := range tenants {
		if len(perTenant[tn]) != per {
			t.Errorf("tenant %q: %d distinct tasks, want %d", tn, len(perTenant[tn]), per)
		}
	}
}

func TestBinaryBadInputExits2AndEnqueuesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range badCases(f.queue) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := f.exec(tc.stdin, tc.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want 2; stderr %q", code, errOut)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q, want one line containing %q", errOut, tc.want)
			}
			if strings.Contains(errOut, "hunter22") || out != "" {
				t.Errorf("stdout %q stderr %q: want no output and no password", out, errOut)
			}
		})
	}
	t.Cleanup(func() {
		if n := f.size(f.queue); n != 0 {
			t.Errorf("queue %s holds %d tasks after bad inputs only, want 0", f.queue, n)
		}
	})
}

func TestBinaryUnreachableRedis(t *testing.T) {
	t.Parallel()
	f := setup(t)
	env := map[string]string{"REDIS_URL": "redis://bob:hunter22@127.0.0.1:1/0", "REDIS_TIMEOUT": "2s"}
	code, out, errOut := f.execEnv(env, "", "--tenant", "a", "--type", "t")
	if code != ExitFailure {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(errOut, "redis://127.0.0.1:1/0") || strings.Contains(errOut, "hunter22") || strings.Count(errOut, "\n") != 1 || out != "" {
		t.Errorf("stdout %q, stderr %q; want one error line with the address and without the password", out, errOut)
	}
}

func TestBinaryHelpAndStatus(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, out, _ := f.exec("", "--help")
	if code != ExitOK || !strings.Contains(out, "Examples:") {
		t.Errorf("--help: exit %d, stdout %.80q", code, out)
	}
	if code, _, errOut := f.exec("", "--tenant", "s", "--type", "t", "--count", "3", "--queue", f.queue); code != ExitOK {
		t.Fatalf("enqueue: exit %d, %s", code, errOut)
	}
	code, out, errOut := f.exec("", "standing", "s", "--queues", f.queue, "--json")
	if code != ExitOK || !strings.Contains(out, `"pending":3`) {
		t.Errorf("standing: exit %d, stdout %s, stderr %s", code, out, errOut)
	}
}
