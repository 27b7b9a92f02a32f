package enqueuecli

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/worker"
)

func TestEnqueueOneTask(t *testing.T) {
	t.Parallel()
	f := setup(t)
	payload := `{"to": "a@example.com",  "n": 1}` // spacing kept: the payload is the user's bytes
	code, out, errOut := f.run("", "--tenant", "acme", "--type", "email:send", "--payload", payload,
		"--queue", f.queue, "--max-retry", "0", "--timeout", "45s", "--header", "trace=abc")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	tasks := f.list(f.queue, asynq.TaskStatePending)
	if len(tasks) != 1 {
		t.Fatalf("%d pending tasks, want 1", len(tasks))
	}
	ti := tasks[0]
	if ti.Type != "email:send" || string(ti.Payload) != payload {
		t.Errorf("task type %q payload %q, want email:send and %q", ti.Type, ti.Payload, payload)
	}
	// the ready time, for the worker's throttle wait histogram
	if ready, err := time.Parse(time.RFC3339Nano, ti.Headers[worker.ReadyHeader]); err != nil || time.Since(ready) > time.Minute || time.Since(ready) < 0 {
		t.Errorf("header %s = %q (%v), want the enqueue time", worker.ReadyHeader, ti.Headers[worker.ReadyHeader], err)
	}
	if want := map[string]string{"tenant": "acme", "trace": "abc"}; !maps.Equal(withoutReady(ti.Headers), want) {
		t.Errorf("headers = %v, want %v", ti.Headers, want)
	}
	if ti.MaxRetry != 0 || ti.Timeout != 45*time.Second {
		t.Errorf("max retry %d timeout %s, want 0 and 45s", ti.MaxRetry, ti.Timeout)
	}
	if !strings.Contains(out, ti.ID) || !strings.Contains(out, "tenant acme") {
		t.Errorf("stdout %q does not name the task %s and its tenant", out, ti.ID)
	}
}

func TestEnqueueCountAndJSON(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, out, errOut := f.run("", "--tenant", "bulk", "--type", "t", "--count", "3000", "--queue", f.queue,
		"--in", "1h", "--json", "--progress", "never")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var sum struct {
		Enqueued, Duplicates int
		PerSecond            float64 `json:"per_second"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if sum.Enqueued != 3000 || sum.Duplicates != 0 || sum.PerSecond <= 0 {
		t.Errorf("summary %+v, want 3000 enqueued at some rate", sum)
	}
	tasks := f.list(f.queue, asynq.TaskStateScheduled)
	if len(tasks) != 3000 {
		t.Fatalf("%d scheduled tasks, want 3000", len(tasks))
	}
	ids := map[string]bool{}
	for _, ti := range tasks {
		ids[ti.ID] = true
		if ti.Headers["tenant"] != "bulk" || ti.NextProcessAt.Before(time.Now().Add(50*time.Minute)) {
			t.Fatalf("task %s: tenant %q, due %s; want bulk, in about 1h", ti.ID, ti.Headers["tenant"], ti.NextProcessAt)
		}
	}
	if len(ids) != 3000 {
		t.Errorf("%d distinct ids, want 3000", len(ids))
	}
}

func TestEnqueueWithoutPipelineAndInOrder(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var in strings.Builder
	for i := range 50 {
		fmt.Fprintf(&in, `{"payload":{"i":%d}}`+"\n", i)
	}
	code, _, errOut := f.run(in.String(), "--file", "-", "--tenant", "ord", "--type", "t", "--queue", f.queue,
		"--concurrency", "1", "--pipeline=false")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	// asynq's pending list is LPUSHed and listed oldest first.
	tasks := f.list(f.queue, asynq.TaskStatePending)
	if len(tasks) != 50 {
		t.Fatalf("%d tasks, want 50", len(tasks))
	}
	for i, ti := range tasks {
		if want := fmt.Sprintf(`{"i":%d}`, i); string(ti.Payload) != want {
			t.Fatalf("task %d has payload %s, want %s: --concurrency 1 keeps the order", i, ti.Payload, want)
		}
	}
}

func TestEnqueueNDJSON(t *testing.T) {
	t.Parallel()
	f := setup(t)
	other := f.queue + "-other"
	lines := strings.Join([]string{
		`{"tenant":"t1","type":"a","payload":{"n": 1}}`,
		``,
		`{"tenant":"t2","type":"b","payload":[1,2],"in":"1h","headers":{"k":"v"},"max_retry":0}`,
		`   {"type":"c"}   `,
		`{"tenant":"t3","type":"d","payload":"str","queue":"` + other + `","id":"fixed-id"}`,
		`{"tenant":"t4","type":"e","at":"2099-01-02T03:04:05Z"}`,
	}, "\n")
	path := filepath.Join(t.TempDir(), "tasks.ndjson")
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := f.run("", "--file", path, "--tenant", "dflt", "--queue", f.queue, "--header", "src=cli")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "enqueued 5 tasks") {
		t.Errorf("stdout %q, want the count of 5", out)
	}
	byType := map[string]*asynq.TaskInfo{}
	for _, q := range []string{f.queue, other} {
		for _, st := range []asynq.TaskState{asynq.TaskStatePending, asynq.TaskStateScheduled} {
			for _, ti := range f.list(q, st) {
				byType[ti.Type] = ti
			}
		}
	}
	check := func(typ, tenant, payload, queue string, headers map[string]string) *asynq.TaskInfo {
		t.Helper()
		ti := byType[typ]
		if ti == nil {
			t.Fatalf("no task of type %s", typ)
		}
		if ti.Headers["tenant"] != tenant || string(ti.Payload) != payload || ti.Queue != queue {
			t.Errorf("task %s: tenant %q payload %q queue %s; want %q %q %s", typ, ti.Headers["tenant"], ti.Payload, ti.Queue, tenant, payload, queue)
		}
		if !maps.Equal(withoutReady(ti.Headers), headers) {
			t.Errorf("task %s: headers %v, want %v", typ, ti.Headers, headers)
		}
		return ti
	}
	check("a", "t1", `{"n": 1}`, f.queue, map[string]string{"tenant": "t1", "src": "cli"})
	b := check("b", "t2", `[1,2]`, f.queue, map[string]string{"tenant": "t2", "src": "cli", "k": "v"})
	if b.State != asynq.TaskStateScheduled || b.MaxRetry != 0 {
		t.Errorf("task b: state %s max retry %d, want scheduled and 0", b.State, b.MaxRetry)
	}
	check("c", "dflt", ``, f.queue, map[string]string{"tenant": "dflt", "src": "cli"})
	if d := check("d", "t3", `"str"`, other, map[string]string{"tenant": "t3", "src": "cli"}); d.ID != "fixed-id" {
		t.Errorf("task d: id %q, want fixed-id", d.ID)
	}
	if e := check("e", "t4", ``, f.queue, map[string]string{"tenant": "t4", "src": "cli"}); !e.NextProcessAt.Equal(time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("task e: due %s, want 2099-01-02T03:04:05Z", e.NextProcessAt)
	}
}

func TestDuplicatesAreSkippedNotFailed(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, out, errOut := f.run("", "--tenant", "u", "--type", "t", "--payload", `{"same":1}`, "--unique", "1h",
		"--count", "20", "--queue", f.queue)
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "enqueued 1 tasks") || !strings.Contains(out, "19 duplicates skipped") {
		t.Errorf("stdout %q, want 1 enqueued and 19 duplicates", out)
	}
	if n := f.size(f.queue); n != 1 {
		t.Errorf("queue holds %d tasks, want 1", n)
	}
	code, out, _ = f.run("", "--tenant", "u", "--type", "t", "--payload", `{"same":1}`, "--unique", "1h", "--queue", f.queue)
	if code != ExitOK || !strings.Contains(out, "duplicate") {
		t.Errorf("single duplicate: exit %d, stdout %q; want 0 and a word on the duplicate", code, out)
	}
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, _, errOut := f.run("", "--tenant", "p", "--type", "t", "--count", "200", "--queue", f.queue, "--progress", "always")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(errOut, "\r[") || !strings.Contains(errOut, "/200") || !strings.HasSuffix(errOut, "\r\x1b[K") {
		t.Errorf("stderr %q, want a progress bar out of 200 that is erased at the end", errOut)
	}
	code, _, errOut = f.run("", "--tenant", "p", "--type", "t", "--count", "20", "--queue", f.queue)
	if code != ExitOK || errOut != "" {
		t.Errorf("--progress auto off a terminal: exit %d, stderr %q; want nothing on stderr", code, errOut)
	}
}

// badCase is an input that must be refused with exit 2 before anything is
// enqueued.
type badCase struct {
	name  string
	stdin string
	args  []string
	want  string // in the error line
}

func badCases(queue string) []badCase {
	task := func(extra ...string) []string {
		return append([]string{"--tenant", "acme", "--type", "t", "--queue", queue}, extra...)
	}
	file := func(extra ...string) []string {
		return append([]string{"--file", "-", "--queue", queue}, extra...)
	}
	good := `{"tenant":"acme","type":"t"}` + "\n"
	return []badCase{
		{"NoTenant", "", []string{"--type", "t", "--queue", queue}, "no tenant: give --tenant"},
		{"TenantWithControlChar", "", []string{"--tenant", "ac\x01me", "--type", "t", "--queue", queue}, "control character"},
		{"TenantTooLong", "", []string{"--tenant", strings.Repeat("x", 129), "--type", "t", "--queue", queue}, "129 bytes"},
		{"NoType", "", []string{"--tenant", "acme", "--queue", queue}, "no task type"},
		{"PayloadNotJSON", "", task("--payload", "{to: a}"), "--payload is not valid JSON"},
		{"InNotADuration", "", task("--in", "5x"), `--in "5x":`},
		{"TimeoutNotADuration", "", task("--timeout", "soon"), `"soon"`},
		{"InNegative", "", task("--in", "-5s"), "negative"},
		{"InAndAt", "", task("--in", "5s", "--at", "2099-01-01T00:00:00Z"), "keep one"},
		{"AtNotATime", "", task("--at", "tomorrow"), "RFC 3339"},
		{"CountZero", "", task("--count", "0"), "--count 0"},
		{"UniqueBelowOneSecond", "", task("--unique", "500ms"), "1s"},
		{"MaxRetryNegative", "", task("--max-retry", "-2"), "max-retry"},
		{"IDWithCount", "", task("--id", "x", "--count", "2"), "same id"},
		{"HeaderTenantDisagrees", "", task("--header", "tenant=other"), `header "tenant"`},
		{"HeaderUpstreamEmpty", "", task("--header", "upstream="), `header "upstream": throttle: invalid tenant id: empty (give the upstream a name)`},
		{"HeaderUpstreamControlChar", "", task("--header", "upstream=api\x7f"), `header "upstream"`},
		{"LineHeaderUpstreamBad", `{"tenant":"acme","type":"t","headers":{"upstream":"a\u0001"}}` + "\n", file(), `line 1: header "upstream"`},
		{"TenantPosesAsUpstream", "", []string{"--tenant", "upstream:acme", "--type", "t", "--queue", queue}, "names a shared upstream limit"},
		{"UnknownFlag", "", task("--tenat", "a"), "unknown flag --tenat (did you mean --tenant?)"},
		{"UnknownCommand", "", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"StrayArgument", "", append(task(), "--", "extra"), `"extra"`},
		{"BadProgress", "", task("--progress", "sometimes"), "--progress"},
		{"BadRedisURL", "", task("--redis-url", "redis://u:hunter22@h:99999"), `port "99999"`},
		{"LineNotJSON", good + good + "{tenant: acme}\n", file(), "line 3: bad JSON at column 2"},
		{"LineCutShort", good + `{"tenant":"acme","type":"t"` + "\n", file(), "line 2: bad JSON"},
		{"LineBadTenant", good + `{"tenant":"","type":"t"}` + "\n", file(), `line 2: no tenant`},
		{"LineUnknownField", `{"tenantt":"acme","type":"t"}` + "\n", file(), `line 1: bad JSON: unknown field "tenantt"`},
		{"LineBadDuration", good + good + good + `{"tenant":"a","type":"t","in":"5 minutes"}` + "\n", file(), `line 4: "in" "5 minutes" is not a duration`},
		{"LineBadPayloadType", `{"tenant":"a","type":"t","max_retry":"3"}` + "\n", file(), `line 1: "max_retry" must be a number`},
		{"LineDuplicateID", `{"tenant":"a","type":"t","id":"x"}` + "\n\n" + `{"tenant":"b","type":"t","id":"x"}` + "\n", file(), `line 3: id "x" is already used on line 1`},
		{"LineTwoObjects", good + `{"tenant":"a","type":"t"} {"tenant":"b","type":"t"}` + "\n", file(), "line 2: bad JSON: more than one value"},
		{"FileEmpty", "\n\n", file(), "stdin holds no tasks"},
		{"FileMissing", "", []string{"--file", "/nonexistent/tasks.ndjson", "--queue", queue}, "no such file"},
		{"FileWithCount", good, file("--count", "3"), "--count and --file"},
		{"FileWithBadDefaultTenant", good, file("--tenant", "a\x7fb"), "--tenant"},
		{"CostZero", "", task("--cost", "0"), `--cost "0": not a whole number of 1 or more`},
		{"CostNegative", "", task("--cost", "-1"), `--cost "-1":`},
		{"CostFraction", "", task("--cost", "1.5"), `--cost "1.5":`},
		{"CostNotANumber", "", task("--cost", "x"), `--cost "x":`},
		{"CostZeroAsFileDefault", good, file("--cost", "0"), `--cost "0":`},
		{"HeaderCostBad", "", task("--header", "cost=1.5"), `header "cost": throttle: invalid cost: "1.5" is not a whole number of 1 or more`},
		{"HeaderCostDisagrees", "", task("--cost", "2", "--header", "cost=3"), `header "cost" is "3" but --cost is 2`},
		{"LineCostZero", good + `{"tenant":"a","type":"t","cost":0}` + "\n", file(), `line 2: "cost" 0 is not a whole number of 1 or more`},
		{"LineCostNegative", `{"tenant":"a","type":"t","cost":-1}` + "\n", file(), `line 1: "cost" -1 is not a whole number`},
		{"LineCostFraction", good + good + `{"tenant":"a","type":"t","cost":1.5}` + "\n", file(), `line 3: "cost" 1.5 is not a whole number`},
		{"LineCostString", `{"tenant":"a","type":"t","cost":"x"}` + "\n", file(), `line 1: "cost" must be a number, not a JSON string`},
		{"LineCostObject", `{"tenant":"a","type":"t","cost":{}}` + "\n", file(), `line 1: "cost" {} is not a whole number`},
		{"LineHeaderCostBad", `{"tenant":"a","type":"t","headers":{"cost":"0"}}` + "\n", file(), `line 1: header "cost"`},
	}
}

func TestBadInputExits2AndEnqueuesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range badCases(f.queue) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := f.run(tc.stdin, tc.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want 2; stderr %q", code, errOut)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") {
				t.Errorf("stderr %q, want exactly one line", errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.want)
			}
			if strings.Contains(errOut, "hunter22") {
				t.Errorf("stderr %q shows the password", errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
	t.Cleanup(func() {
		if n := f.size(f.queue); n != 0 {
			t.Errorf("queue %s holds %d tasks after bad inputs only, want 0", f.queue, n)
		}
	})
}

func TestUnreachableRedisExits1WithAddressNotPassword(t *testing.T) {
	t.Parallel()
	f := setup(t)
	env := map[string]string{"REDIS_URL": "redis://bob:hunter22@127.0.0.1:1/0", "REDIS_TIMEOUT": "2s"}
	for _, args := range [][]string{
		{"--tenant", "a", "--type", "t"},
		{"status"},
		{"policy", "show", "acme"},
	} {
		code, out, errOut := f.runEnv(env, "", args...)
		if code != ExitFailure {
			t.Errorf("%q: exit %d, want 1", args, code)
		}
		if !strings.Contains(errOut, "127.0.0.1:1") || strings.Contains(errOut, "hunter22") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: stderr %q, want one line with the address and without the password", args, errOut)
		}
		if out != "" {
			t.Errorf("%q: stdout %q, want nothing", args, out)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"policy", "--help"}, {"quota", "-h"}, {"status", "--help"}, {"policy", "set", "-h"}} {
		code, out, errOut := f.run("", args...)
		if code != ExitOK || !strings.Contains(out, "Usage:") || errOut != "" {
			t.Errorf("%q: exit %d, stdout %.60q, stderr %q; want usage on stdout, exit 0", args, code, out, errOut)
		}
	}
	_, out, _ := f.run("", "--help")
	for _, want := range []string{"Examples:", "--redis-url", "REDIS_URL", "--count", "--file", "--version"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
	// each command's help describes its flags and their units
	for cmd, wants := range map[string][]string{
		"policy":   {"--rate RATE", "tokens per second", "--burst TOKENS", "--quota-period DURATION", "aligned to UTC", "--default"},
		"quota":    {"--all", "--now", "--queue QUEUE", "--quota TOKENS", "aligned to UTC"},
		"standing": {"--queues QUEUES", "a rate in tokens", "--json"},
	} {
		_, out, _ := f.run("", cmd, "--help")
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help does not mention %s", cmd, want)
			}
		}
	}
}

// TestMistypedVariablesAreWarnedAbout: a QUOTAQ_* variable close to one the
// command reads is warned about on stderr, once, and the command goes on;
// the worker's variables, set in a shared environment, are not.
func TestMistypedVariablesAreWarnedAbout(t *testing.T) {
	t.Parallel()
	f := setup(t)
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"MistypedPrefix", map[string]string{"QUOTAQ_PREFX": "x"}, "quotaq-enqueue: warning: QUOTAQ_PREFX is not a setting of quotaq-enqueue (did you mean QUOTAQ_PREFIX?); it is ignored\n"},
		{"MistypedEviction", map[string]string{"QUOTAQ_ALLOW_EVICTON": "1"}, "quotaq-enqueue: warning: QUOTAQ_ALLOW_EVICTON is not a setting of quotaq-enqueue (did you mean QUOTAQ_ALLOW_EVICTION?); it is ignored\n"},
		{"WorkersVariables", map[string]string{"QUOTAQ_CONCURRENCY": "20", "QUOTAQ_METRICS_ADDR": ":2112", "QUOTAQ_EMBEDDED": "1", "QUOTAQ_CONFIG": "/etc/quotaq.yaml"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := f.env()
			for k, v := range tc.env {
				env[k] = v
			}
			code, _, errOut := f.runEnv(env, "", "status", "--queues", f.queue)
			if code != ExitOK || errOut != tc.want {
				t.Errorf("exit %d, stderr %q; want 0 and %q", code, errOut, tc.want)
			}
		})
	}
}

func TestPipelinedBulkOnAFreshServer(t *testing.T) {
	t.Parallel()
	// A fresh server has no scripts loaded: asynq's first EVALSHA of each
	// pipelined batch meets NOSCRIPT and must fall back to EVAL.
	srv, err := redistest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	f := setup(t)
	env := map[string]string{"REDIS_URL": "redis://" + srv.Addr + "/0"}
	code, out, errOut := f.runEnv(env, "", "--tenant", "fresh", "--type", "t", "--count", "500", "--queue", "fresh")
	if code != ExitOK || !strings.Contains(out, "enqueued 500 tasks") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	if n, err := rdb.LLen(context.Background(), "asynq:{fresh}:pending").Result(); err != nil || n != 500 {
		t.Errorf("pending list holds %d (%v), want 500", n, err)
	}
}

// TestConfigurationErrorsExit2AndWriteNothing: an empty prefix (which the
// worker would not share) and a Redis that may evict keys stop every command
// with exit 2 before anything is written; QUOTAQ_ALLOW_EVICTION runs anyway,
// with a warning, and status reports the policy.
func TestConfigurationErrorsExit2AndWriteNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	lru := redistest.NewServer(t, "maxmemory-policy allkeys-lru")
	lruURL := "redis://" + lru.Addr + "/0"
	commands := [][]string{
		{"--tenant", "a", "--type", "t", "--queue", f.queue},
		{"status", "--queues", f.queue},
		{"policy", "set", "acme", "--rate", "1", "--burst", "1"},
	}
	cases := []struct {
		name string
		env  map[string]string
		pre  []string // flags before the command
		want string
	}{
		{"EmptyPrefixEnv", map[string]string{"REDIS_URL": f.url, "QUOTAQ_PREFIX": ""}, nil, `QUOTAQ_PREFIX "" is empty`},
		{"EmptyPrefixFlag", map[string]string{"REDIS_URL": f.url}, []string{"--prefix", ""}, `--prefix "" is empty`},
		{"EvictingRedis", map[string]string{"REDIS_URL": lruURL, "QUOTAQ_PREFIX": f.prefix}, nil, "maxmemory-policy allkeys-lru"},
	}
	for _, tc := range cases {
		for _, args := range commands {
			code, out, errOut := f.runEnv(tc.env, "", append(append([]string(nil), tc.pre...), args...)...)
			if code != ExitUsage || out != "" || !strings.Contains(errOut, tc.want) {
				t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want 2 saying %q", tc.name, args, code, out, errOut, tc.want)
			}
		}
	}
	if n := f.size(f.queue); n != 0 {
		t.Errorf("queue holds %d tasks, want 0", n)
	}
	if _, explicit, err := f.limiter().GetPolicy(context.Background(), "acme"); err != nil || explicit {
		t.Errorf("acme has a policy (%v) after refused commands", err)
	}

	code, out, errOut := f.runEnv(map[string]string{"REDIS_URL": lruURL, "QUOTAQ_ALLOW_EVICTION": "1"}, "", "status")
	if code != ExitOK || !strings.Contains(errOut, "EVICTION ALLOWED") || !strings.Contains(out, "redis "+lruURL+", maxmemory-policy allkeys-lru") {
		t.Errorf("with QUOTAQ_ALLOW_EVICTION: exit %d, stdout %q, stderr %q; want 0, a warning and the policy", code, out, errOut)
	}
}

// withoutReady is h without the ready time every enqueued task carries.
func withoutReady(h map[string]string) map[string]string {
	out := maps.Clone(h)
	delete(out, worker.ReadyHeader)
	return out
}
