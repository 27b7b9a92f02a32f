package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/buildtest"
	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
)

// execBinary runs quotaq-worker or quotaq-enqueue, built once per test
// run, with env as the only QUOTAQ_* and REDIS_* variables.
func execBinary(t *testing.T, name string, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	pkg := map[string]string{"quotaq-worker": "github.com/quotaq/quotaq/cmd/worker", "quotaq-enqueue": "github.com/quotaq/quotaq/cmd/enqueue"}[name]
	return buildtest.Run(t, buildtest.Command(t, name, pkg), env, "", args...)
}

// TestBinariesBehaveAlike: both programs print help to stdout and exit 0,
// report a usage error on one line of stderr that names the flag or
// variable and the bad value, exit 2, and print nothing else.
func TestBinariesBehaveAlike(t *testing.T) {
	t.Parallel()
	const w, e = "quotaq-worker", "quotaq-enqueue"
	cases := []struct {
		name   string
		bin    string
		args   []string
		env    map[string]string
		code   int
		stdout []string // all in stdout; nil: stdout empty
		stderr string   // the one line of stderr; "": stderr empty
	}{
		{"WorkerHelp", w, []string{"--help"}, nil, 0, []string{"Usage:\n  quotaq-worker [flags]", "\nFlags:\n  --algorithm STRING\n", "  --concurrency INT\n", "Redis flags", "  --redis-url URL\n", "QUOTAQ_CONFIG"}, ""},
		{"WorkerShortHelp", w, []string{"-h"}, nil, 0, []string{"Usage:"}, ""},
		{"EnqueueHelp", e, []string{"--help"}, nil, 0, []string{"Usage:\n  quotaq-enqueue", "Task flags:\n  --at TIME\n", "  --redis-url URL\n"}, ""},
		{"EnqueuePolicyHelp", e, []string{"policy", "--help"}, nil, 0, []string{"Flags:\n  --burst TOKENS\n", "  --rate RATE\n        rate in tokens per second", "  --quota-period DURATION\n", "aligned to UTC", "midnight UTC"}, ""},
		{"EnqueuePolicySetHelp", e, []string{"policy", "set", "--help"}, nil, 0, []string{"  --concurrency TASKS\n", "aligned to UTC"}, ""},
		{"EnqueueQuotaHelp", e, []string{"quota", "--help"}, nil, 0, []string{"  --all\n", "  --now\n", "  --quota-period DURATION\n", "aligned to UTC"}, ""},
		{"EnqueueStandingHelp", e, []string{"standing", "--help"}, nil, 0, []string{"  --queues QUEUES\n", "a rate in tokens", "aligned to"}, ""},
		{"WorkerHealthcheckHelp", w, []string{"healthcheck", "--help"}, nil, 0, []string{"Usage:\n  quotaq-worker healthcheck", "/healthz"}, ""},
		{"WorkerVersion", w, []string{"--version"}, nil, 0, []string{"quotaq-worker ", " asynq v0.26", " go1."}, ""},
		{"EnqueueVersion", e, []string{"--version"}, nil, 0, []string{"quotaq-enqueue ", " asynq v0.26", " go1."}, ""},
		{"WorkerMistypedFlag", w, []string{"--concurency", "3"}, nil, 2, nil, "quotaq-worker: unknown flag --concurency (did you mean --concurrency?) (see quotaq-worker --help)"},
		{"EnqueueMistypedFlag", e, []string{"--tenat", "acme"}, nil, 2, nil, "quotaq-enqueue: unknown flag --tenat (did you mean --tenant?) (see quotaq-enqueue --help)"},
		{"WorkerUnknownFlag", w, []string{"--colour"}, nil, 2, nil, "quotaq-worker: unknown flag --colour (see quotaq-worker --help)"},
		{"WorkerBadNumber", w, []string{"--concurrency=abc"}, nil, 2, nil, `quotaq-worker: --concurrency "abc": not a whole number (see quotaq-worker --help)`},
		{"EnqueueBadNumber", e, []string{"--count", "abc"}, nil, 2, nil, `quotaq-enqueue: --count "abc": not a whole number (see quotaq-enqueue --help)`},
		{"WorkerBadDuration", w, []string{"--lease", "5"}, nil, 2, nil, `quotaq-worker: --lease "5": not a duration such as 1.5s, 2m or 1h (see quotaq-worker --help)`},
		{"EnqueueBadDuration", e, []string{"policy", "set", "acme", "--quota-period", "1d"}, nil, 2, nil, `quotaq-enqueue: --quota-period "1d": not a duration such as 1.5s, 2m or 1h (see quotaq-enqueue --help)`},
		{"WorkerBadBool", w, []string{"--fail-open=yes"}, nil, 2, nil, `quotaq-worker: --fail-open "yes": give true or false (see quotaq-worker --help)`},
		{"WorkerMissingValue", w, []string{"--concurrency"}, nil, 2, nil, "quotaq-worker: --concurrency needs a value (--concurrency=VALUE or --concurrency VALUE) (see quotaq-worker --help)"},
		{"WorkerBadEnv", w, nil, map[string]string{"QUOTAQ_CONCURRENCY": "abc"}, 2, nil, `quotaq-worker: QUOTAQ_CONCURRENCY="abc": not a whole number (see quotaq-worker --help)`},
		{"WorkerBadEnvDuration", w, nil, map[string]string{"QUOTAQ_MAX_WAIT": "10"}, 2, nil, `quotaq-worker: QUOTAQ_MAX_WAIT="10": not a duration such as 1.5s, 2m or 1h (see quotaq-worker --help)`},
		{"WorkerArgument", w, []string{"start"}, nil, 2, nil, `quotaq-worker: unexpected argument "start": quotaq-worker takes flags only (see quotaq-worker --help)`},
		{"EnqueueMistypedCommand", e, []string{"polcy", "show", "acme"}, nil, 2, nil, `quotaq-enqueue: unknown command "polcy" (did you mean policy?) (commands: policy, standing, status, quota, unhold; with none, it enqueues) (see quotaq-enqueue --help)`},
		{"EnqueueMistypedSubcommand", e, []string{"policy", "sett", "acme"}, nil, 2, nil, `quotaq-enqueue: unknown policy subcommand "sett" (did you mean set?) (use show, set or delete) (see quotaq-enqueue --help)`},
		{"HealthcheckWithoutAddress", w, []string{"healthcheck", "--metrics-addr="}, nil, 2, nil, "quotaq-worker: healthcheck: --metrics-addr is empty, so the worker serves no /healthz: give the worker and the check the same --metrics-addr (see quotaq-worker --help)"},
		{"HealthcheckMistypedFlag", w, []string{"healthcheck", "--metrics-adr", ":1"}, nil, 2, nil, "quotaq-worker: unknown flag --metrics-adr (did you mean --metrics-addr?) (see quotaq-worker --help)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := execBinary(t, tc.bin, tc.env, tc.args...)
			if code != tc.code {
				t.Errorf("%s %q: exit %d, want %d\nstdout: %.300s\nstderr: %s", tc.bin, tc.args, code, tc.code, stdout, stderr)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("%s %q: stdout does not have %q:\n%s", tc.bin, tc.args, want, stdout)
				}
			}
			if tc.stdout == nil && stdout != "" {
				t.Errorf("%s %q: stdout %q, want nothing", tc.bin, tc.args, stdout)
			}
			if want := tc.stderr; (want == "" && stderr != "") || (want != "" && stderr != want+"\n") {
				t.Errorf("%s %q: stderr\n%q\nwant\n%q", tc.bin, tc.args, stderr, want+"\n")
			}
			if tc.code == 0 && strings.HasPrefix(tc.name, "WorkerVersion") && strings.Count(stdout, "\n") != 1 {
				t.Errorf("--version printed %q, want one line", stdout)
			}
		})
	}
}

// TestWorkerHelpNamesRealEnqueueCommands: every "quotaq-enqueue COMMAND
// SUBCOMMAND" the worker's help names exists: quotaq-enqueue prints its help
// for it.
func TestWorkerHelpNamesRealEnqueueCommands(t *testing.T) {
	t.Parallel()
	_, help, _ := execBinary(t, "quotaq-worker", nil, "--help")
	mentions := regexp.MustCompile(`quotaq-enqueue((?: [a-z][a-z-]*)+)`).FindAllStringSubmatch(help, -1)
	if len(mentions) < 2 {
		t.Fatalf("the worker's help names %d quotaq-enqueue commands, want its policy commands at least:\n%s", len(mentions), help)
	}
	for _, m := range mentions {
		words := strings.Fields(m[1])
		if words[0] == "with" || words[0] == "shows" || words[0] == "must" {
			continue // prose: "quotaq-enqueue with no configuration"
		}
		args := append(words[:min(len(words), 2)], "--help")
		if code, _, stderr := execBinary(t, "quotaq-enqueue", nil, args...); code != 0 {
			t.Errorf("the worker's help names %q, but quotaq-enqueue %s exits %d: %s", m[0], strings.Join(args, " "), code, stderr)
		}
	}
}

// TestUnknownQuotaqVariablesAreWarnedAbout: the worker warns, in its log at
// start, about each QUOTAQ_* variable that is none of its settings, naming
// the one meant when it is close; the variables of the Redis flags, of
// --config and of the test suite are known.
func TestUnknownQuotaqVariablesAreWarnedAbout(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"Mistyped", map[string]string{"QUOTAQ_CONCURENCY": "20"}, []string{"QUOTAQ_CONCURENCY is not a setting of quotaq-worker (did you mean QUOTAQ_CONCURRENCY?); it is ignored"}},
		{"MistypedShared", map[string]string{"QUOTAQ_PREFX": "a"}, []string{"QUOTAQ_PREFX is not a setting of quotaq-worker (did you mean QUOTAQ_PREFIX?); it is ignored"}},
		{"Unrelated", map[string]string{"QUOTAQ_COLOUR": "red"}, []string{"QUOTAQ_COLOUR is not a setting of quotaq-worker; it is ignored"}},
		{"Known", map[string]string{"QUOTAQ_CONCURRENCY": "3", "QUOTAQ_PREFIX": "p", "QUOTAQ_ALLOW_EVICTION": "false", "QUOTAQ_EMBEDDED": "false",
			"QUOTAQ_EMBEDDED_ADDR": "127.0.0.1:0", "QUOTAQ_E2E_LONG": "1", "REDIS_URLL": "x", "QUOTAQ_LOG_FORMAT": "json"}, nil},
		{"Two", map[string]string{"QUOTAQ_LEASE_TIME": "1s", "QUOTAQ_VERSION": "1"}, []string{
			"QUOTAQ_LEASE_TIME is not a setting of quotaq-worker; it is ignored",
			"QUOTAQ_VERSION is not a setting of quotaq-worker; it is ignored"}}, // --version is for the command line only
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags(nil, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(o.warnings, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(o.warnings, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	t.Run("InTheLogAtStart", func(t *testing.T) {
		t.Parallel()
		w := startWorker(t, []string{"--redis-url", "redis://" + redistest.Addr(t) + "/0"}, map[string]string{"QUOTAQ_MAX_WAITT": "1m"})
		if !strings.Contains(w.logs.String(), "QUOTAQ_MAX_WAITT is not a setting of quotaq-worker (did you mean QUOTAQ_MAX_WAIT?)") {
			t.Errorf("the log at start does not warn about QUOTAQ_MAX_WAITT:\n%s", w.logs.String())
		}
	})
}

// TestHealthcheck: `quotaq-worker healthcheck` exits 0 with one line while
// the worker runs and reaches Redis, 1 with one line when its Redis is down
// or the worker is stopped. It finds the address as the worker does
// (here from QUOTAQ_METRICS_ADDR).
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, addr string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"healthcheck"}, env(map[string]string{"QUOTAQ_METRICS_ADDR": addr}), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	t.Run("RunningThenStopped", func(t *testing.T) {
		t.Parallel()
		w := startWorker(t, []string{"--redis-url", "redis://" + redistest.Addr(t) + "/0"}, nil)
		addr := strings.TrimPrefix(w.metrics, "http://")
		code, stdout, stderr := check(t, addr)
		if code != 0 || stdout != "quotaq-worker healthcheck: healthy: http://"+addr+"/healthz answered ok\n" || stderr != "" {
			t.Errorf("running worker: exit %d, stdout %q, stderr %q; want 0 and one line saying it is healthy", code, stdout, stderr)
		}
		if code := w.stop(t); code != 0 {
			t.Fatalf("worker exited %d", code)
		}
		code, stdout, stderr = check(t, addr)
		if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "unhealthy") || !strings.Contains(stderr, "connection refused") {
			t.Errorf("stopped worker: exit %d, stdout %q, stderr %q; want 1 and one line saying it is unhealthy", code, stdout, stderr)
		}
	})
	t.Run("RedisDown", func(t *testing.T) {
		t.Parallel()
		srv := redistest.NewServer(t)
		w := startWorker(t, []string{"--redis-url", "redis://" + srv.Addr + "/0", "--redis-timeout", "500ms"}, nil)
		srv.Kill()
		code, stdout, stderr := check(t, strings.TrimPrefix(w.metrics, "http://"))
		if code != 1 || stdout != "" || !strings.HasSuffix(stderr, "answered 503 Service Unavailable: redis unavailable\n") {
			t.Errorf("worker without Redis: exit %d, stdout %q, stderr %q; want 1 and the 503", code, stdout, stderr)
		}
	})
}

func TestHealthzURLAsksLoopbackForEveryInterface(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		":2112":           "http://127.0.0.1:2112/healthz",
		"0.0.0.0:2112":    "http://127.0.0.1:2112/healthz",
		"[::]:2112":       "http://[::1]:2112/healthz",
		"127.0.0.1:9000":  "http://127.0.0.1:9000/healthz",
		"worker-1:2112":   "http://worker-1:2112/healthz",
		"[fd00::1]:2112":  "http://[fd00::1]:2112/healthz",
		"localhost:12345": "http://localhost:12345/healthz",
	}
	for addr, want := range cases {
		if got, err := healthzURL(addr); err != nil || got != want {
			t.Errorf("healthzURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	if _, err := healthzURL("2112"); err == nil {
		t.Error(`healthzURL("2112") gave no error`)
	}
}

// TestEmptyQueuesAreLoggedOnceAMinute: at --log-level debug an idle worker
// says that its queues are empty once, not at every check of every
// goroutine (asynq's own line, tens of times a second).
func TestEmptyQueuesAreLoggedOnceAMinute(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t) // its own, to count the worker's checks
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	w := startWorker(t, []string{"--redis-url", "redis://" + srv.Addr + "/0", "--log-level", "debug",
		"--task-check-interval", "5ms", "--concurrency", "8"}, nil)
	wait.For(t, 10*time.Second, "asynq's line about empty queues", func() bool { return w.logs.Count("All queues are empty") > 0 })
	// each check of an empty queue runs asynq's dequeue script once
	base := scriptCalls(t, rdb)
	wait.For(t, 20*time.Second, "200 more checks of the empty queue", func() bool { return scriptCalls(t, rdb) > base+200 })
	if n := w.logs.Count("All queues are empty"); n != 1 {
		t.Errorf("an idle worker said %d times that its queues are empty, want once", n)
	}
}

// scriptCalls is how many EVALSHA and EVAL calls the server has run.
func scriptCalls(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile(`cmdstat_eval(?:sha)?:calls=(\d+)`).FindAllStringSubmatch(info, -1) {
		c, _ := strconv.Atoi(m[1])
		n += c
	}
	return n
}

// TestLogsWriteDurationsAsText: durations in the logs read "1.5s" in both
// formats; JSON would write nanoseconds (1500000000) by default.
func TestLogsWriteDurationsAsText(t *testing.T) {
	t.Parallel()
	cases := map[string]string{"json": `"timeout":"1.5s"`, "text": "timeout=1.5s"}
	for format, want := range cases {
		var b bytes.Buffer
		o := &options{logLevel: "info", logFormat: format}
		o.logger(&b).Info("stopping", "timeout", 1500*time.Millisecond)
		if !strings.Contains(b.String(), want) {
			t.Errorf("--log-format %s wrote %q, want %s", format, b.String(), want)
		}
	}
}
