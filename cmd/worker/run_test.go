package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/buildtest"
	"github.com/quotaq/quotaq/internal/cmdline"
	"github.com/quotaq/quotaq/internal/enqueuecli"
	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	buildtest.Cleanup()
	os.Exit(code)
}

func env(vars map[string]string) cmdline.Env { return cmdline.Env(vars) }

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badSchedule := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badSchedule, []byte("entries: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"ZeroConcurrency", []string{"--concurrency", "0"}, nil, "--concurrency 0"},
		{"QueueWeightZero", []string{"--queues", "a=0"}, nil, `queue "a" has weight "0"`},
		{"QueueTwice", []string{"--queues", "a,a=2"}, nil, `queue "a" is listed twice`},
		{"BadLogLevel", []string{"--log-level", "loud"}, nil, `--log-level "loud"`},
		{"BadAlgorithm", []string{"--algorithm", "leaky"}, nil, "--algorithm"},
		{"BadHTTPAllow", []string{"--http-allow", "api.example.com,http://x"}, nil, `--http-allow: worker: allow-list entry "http://x"`},
		{"BadHTTPAllowCIDR", nil, map[string]string{"QUOTAQ_HTTP_ALLOW": "10.0.0.0/40"}, `"10.0.0.0/40" is not a CIDR block`},
		{"MaxRetryAfterZero", []string{"--max-retry-after", "0"}, nil, "--max-retry-after 0s: give a positive duration"},
		{"DefaultRateNaN", []string{"--default-rate", "NaN"}, nil, "--default-rate NaN: give a number of tokens per second from 1.1574074074074074e-06"},
		{"DefaultRateInf", []string{"--default-rate", "Inf"}, nil, "--default-rate +Inf"},
		{"DefaultRateAboveTheMost", []string{"--default-rate", "2e9"}, nil, "to 1e+09"},
		{"DefaultRateTooSmallForItsInterval", []string{"--default-rate", "1e-12", "--default-burst", "1"}, nil, "--default-rate 1e-12: give a number of tokens per second from 1.1574074074074074e-06"},
		{"DefaultPolicyTooSlowToRefill", []string{"--default-rate", "0.00001", "--default-burst", "100"}, nil, "to refill"},
		{"NegativeMaxWait", []string{"--max-wait", "-1s"}, nil, "--max-wait -1s is negative"},
		{"NegativeLease", []string{"--lease", "-5ms"}, nil, "--lease -5ms is negative"},
		{"ShortSlotTTL", []string{"--slot-ttl", "100ms"}, nil, "--slot-ttl 100ms is below 1s"},
		{"NegativeBatch", nil, map[string]string{"QUOTAQ_BATCH": "-1"}, "--batch -1 is negative"},
		{"BadUntenanted", []string{"--untenanted", ""}, nil, "--untenanted"},
		{"BadUpstreamPattern", []string{"--upstreams", "api.example,api[.*"}, nil, `--upstreams: worker: upstream pattern "api[.*"`},
		{"MetricsTenantWithoutTier", []string{"--metrics-tenants", "acme,globex="}, nil, `--metrics-tenants: "globex=" has no tier after "=": give TENANT or TENANT=TIER`},
		{"MetricsTenantInvalid", nil, map[string]string{"QUOTAQ_METRICS_TENANTS": "=gold"}, `--metrics-tenants: "=gold"`},
		{"MetricsTenantTwice", []string{"--metrics-tenants", "acme,acme=gold"}, nil, `tenant "acme" is listed twice`},
		{"Argument", []string{"extra"}, nil, `unexpected argument "extra"`},
		{"UnknownFlag", []string{"--nope"}, nil, "unknown flag --nope (see quotaq-worker --help)"},
		{"BadEnv", nil, map[string]string{"QUOTAQ_CONCURRENCY": "many"}, `QUOTAQ_CONCURRENCY="many": not a whole number`},
		{"ScheduleQueueNotServed", []string{"--schedule", badSchedule, "--queues", "a", "--schedule-queue", "b"}, nil, `--schedule-queue "b" is not one of --queues (a=1)`},
		{"BadScheduleFile", []string{"--schedule", badSchedule, "--metrics-addr", ""}, nil, "--schedule:"},
		{"MissingScheduleFile", []string{"--schedule", filepath.Join(dir, "none.yaml"), "--metrics-addr", ""}, nil, "none.yaml"},
		{"BadRedisURL", []string{"--redis-url", "http://x", "--metrics-addr", ""}, nil, "redis"},
		{"EmptyPrefixFlag", []string{"--prefix", ""}, nil, `--prefix "" is empty`},
		{"EmptyPrefixEnv", nil, map[string]string{"QUOTAQ_PREFIX": ""}, `QUOTAQ_PREFIX "" is empty`},
		{"BlankPrefixEnv", nil, map[string]string{"QUOTAQ_PREFIX": "  "}, `QUOTAQ_PREFIX "  " is empty`},
		{"NoRedisAndNoEmbedded", []string{"--metrics-addr", ""}, nil, "set --redis-url or REDIS_URL"},
		{"NoRedisSaysHowToEmbed", []string{"--metrics-addr", ""}, nil, "--embedded (QUOTAQ_EMBEDDED=1)"},
		{"EmbeddedAndRedisURL", []string{"--embedded", "--metrics-addr", ""}, map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0"}, "keep one"},
		{"BadEmbeddedEnv", []string{"--metrics-addr", ""}, map[string]string{"QUOTAQ_EMBEDDED": "sure"}, `QUOTAQ_EMBEDDED="sure"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr wait.Buffer
			// a worker that starts instead of refusing stops here and fails
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := run(ctx, tc.args, env(tc.env), io.Discard, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

func TestHelpExitsZeroAndExplains(t *testing.T) {
	t.Parallel()
	var out wait.Buffer
	if code := run(context.Background(), []string{"--help"}, env(nil), &out, io.Discard); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"QUOTAQ_<FLAG>", "-max-wait", "-delayed-task-check-interval", "-metrics-addr", "-fail-open", "-queues", "REDIS_URL", "--embedded",
		"-allow-eviction", "noeviction", "loopback only", "-metrics-max-types", "-metrics-tenants", "TENANT=TIER", "-http-allow", "169.254.0.0/16", "-max-retry-after"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}

func TestEnvironmentFillsUnsetFlags(t *testing.T) {
	t.Parallel()
	o, err := parseFlags([]string{"--concurrency", "3"}, env(map[string]string{
		"QUOTAQ_CONCURRENCY": "99", "QUOTAQ_QUEUES": "hi=5,lo", "QUOTAQ_FAIL_OPEN": "true", "QUOTAQ_MAX_WAIT": "1m",
		"QUOTAQ_LEASE": "0", "QUOTAQ_BATCH": "8",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.concurrency != 3 || o.queues.String() != "hi=5,lo=1" || !o.failOpen || o.maxWait != time.Minute || o.lease != 0 || o.batch != 8 {
		t.Errorf("options %+v: want the flag's concurrency 3 and the rest from the environment", o)
	}
}

// worker is a quotaq-worker started by run in the background.
type runningWorker struct {
	logs    *wait.Buffer
	metrics string // base URL of the metrics endpoint
	cancel  context.CancelFunc
	done    chan int
}

func startWorker(t *testing.T, args []string, vars map[string]string) *runningWorker {
	t.Helper()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithCancel(context.Background())
	w := &runningWorker{logs: &wait.Buffer{}, metrics: "http://" + addr, cancel: cancel, done: make(chan int, 1)}
	go func() {
		w.done <- run(ctx, append([]string{"--metrics-addr", addr}, args...), env(vars), io.Discard, w.logs)
	}()
	wait.For(t, 20*time.Second, "the worker to start", func() bool {
		select {
		case code := <-w.done:
			t.Fatalf("worker exited %d at start:\n%s", code, w.logs.String())
		default:
		}
		return strings.Contains(w.logs.String(), "quotaq-worker: started")
	})
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop cancels the worker (as SIGTERM does) and returns its exit code.
func (w *runningWorker) stop(t *testing.T) int {
	t.Helper()
	w.cancel()
	select {
	case code := <-w.done:
		w.done <- code // later calls see it too
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("worker did not stop:\n%s", w.logs.String())
	}
	return -1
}

func (w *runningWorker) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(w.metrics + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHTTPCallsAreThrottledAndHonour429: http:call tasks against a fake
// upstream that answers 429 once: all of them succeed in the end, none is
// archived, and the metrics say what happened. A Retry-After of a year is
// cut to --max-retry-after.
func TestHTTPCallsAreThrottledAndHonour429(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, retryAfter string
		args             []string
		capped           bool
	}{
		{"RetryAfterOneSecond", "1", nil, false},
		{"RetryAfterAYearIsCut", "31536000", []string{"--max-retry-after", "1s"}, true},
		{"RetryAfterIn2099IsCut", "Thu, 01 Jan 2099 00:00:00 GMT", []string{"--max-retry-after", "1s"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			httpCallsHonour429(t, tt.retryAfter, tt.args, tt.capped)
		})
	}
}

func httpCallsHonour429(t *testing.T, retryAfter string, args []string, capped bool) {
	var calls, ok atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", retryAfter)
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		ok.Add(1)
	}))
	t.Cleanup(upstream.Close)

	rdb, prefix := redistest.Client(t)
	queue := "q-" + prefix
	l := throttle.New(rdb, throttle.WithPrefix(prefix))
	if err := l.SetPolicy(context.Background(), "acme", throttle.Policy{Rate: 20, Burst: 2}); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, append([]string{"--redis-url", "redis://" + redistest.Addr(t), "--queues", queue, "--prefix", prefix, "--per-tenant-metrics"}, args...), nil)

	client := asynq.NewClientFromRedisClient(rdb)
	const n = 12
	for range n {
		task, err := worker.NewHTTPCallTask(worker.HTTPCall{Tenant: "acme", Method: "POST", URL: upstream.URL + "/hook", Body: `{"x":1}`})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task, asynq.Queue(queue), asynq.MaxRetry(0)); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 20*time.Second, "every call to succeed", func() bool { return ok.Load() == n })
	q, err := asynq.NewInspectorFromRedisClient(rdb).GetQueueInfo(queue)
	if err != nil {
		t.Fatal(err)
	}
	if q.Archived != 0 || q.Failed != 0 {
		t.Errorf("archived=%d failed=%d, want 0 0", q.Archived, q.Failed)
	}
	code, body := w.get(t, "/metrics")
	for _, want := range []string{
		`quotaq_worker_upstream_retry_after_total{tenant="acme",type="http:call"} 1`,
		`quotaq_worker_throttled_total{reason="upstream",tenant="acme",type="http:call"} 1`,
		`quotaq_worker_requeued_total{tenant="acme",type="http:call"}`,
		`quotaq_worker_allowed_total{tenant="acme",type="http:call",via="now"} 13`, // the 429ed call ran twice
		`go_goroutines`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	const cut = `quotaq_worker_upstream_retry_after_capped_total{type="http:call"} 1`
	if strings.Contains(body, cut) != capped {
		t.Errorf("/metrics has %q: %v, want %v", cut, !capped, capped)
	}
	if code, body := w.get(t, "/healthz"); code != 200 || body != "ok\nmaxmemory-policy noeviction\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if c := w.stop(t); c != 0 {
		t.Errorf("exit %d after shutdown, want 0", c)
	}
	if logs := w.logs.String(); !strings.Contains(logs, "upstream asked to retry later") || strings.Contains(logs, "revoke task") {
		t.Errorf("logs should report the 429 and not asynq's revoke warnings:\n%s", logs)
	}
}

// TestHTTPAllowArchivesCallsToOtherHosts: with --http-allow, an http:call
// to a host not on the list (127.0.0.1) is archived without being sent;
// one on the list (localhost) is sent.
func TestHTTPAllowArchivesCallsToOtherHosts(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	t.Cleanup(upstream.Close)
	rdb, prefix := redistest.Client(t)
	queue := "q-" + prefix
	w := startWorker(t, []string{"--redis-url", "redis://" + redistest.Addr(t), "--queues", queue, "--prefix", prefix,
		"--http-allow", "api.example.com,localhost"}, nil)
	client := asynq.NewClientFromRedisClient(rdb)
	for _, url := range []string{"http://localhost" + upstream.URL[strings.LastIndex(upstream.URL, ":"):], upstream.URL} {
		task, err := worker.NewHTTPCallTask(worker.HTTPCall{Tenant: "acme", URL: url})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task, asynq.Queue(queue)); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	wait.For(t, 20*time.Second, "one call archived, one done", func() bool {
		q, err := insp.GetQueueInfo(queue)
		return err == nil && q.Archived == 1 && q.Processed == 2
	})
	if n := calls.Load(); n != 1 {
		t.Errorf("upstream called %d times, want once (localhost allowed, 127.0.0.1 not)", n)
	}
	if c := w.stop(t); c != 0 {
		t.Errorf("exit %d after shutdown, want 0", c)
	}
}

// TestEmbeddedRedisRunsTheThrottle: with --embedded the worker starts
// miniredis, says so, and throttled tasks (whose re-queue scripts
// run on miniredis) are all processed.
func TestEmbeddedRedisRunsTheThrottle(t *testing.T) {
	t.Parallel()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	w := startWorker(t, []string{"--embedded", "--embedded-addr", addr, "--echo-types", "job", "--default-rate", "20", "--default-burst", "2"}, nil)
	if !strings.Contains(strings.ToLower(w.logs.String()), "embedded") {
		t.Errorf("no log line says Redis is embedded:\n%s", w.logs.String())
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	client := asynq.NewClientFromRedisClient(rdb)
	const n = 15
	for i := range n {
		task := asynq.NewTaskWithHeaders("job", fmt.Appendf(nil, `{"i":%d}`, i), map[string]string{worker.TenantHeader: "demo"})
		if _, err := client.Enqueue(task, asynq.MaxRetry(0)); err != nil {
			t.Fatal(err)
		}
	}
	ins := asynq.NewInspectorFromRedisClient(rdb)
	wait.For(t, 20*time.Second, "all tasks to run", func() bool {
		q, err := ins.GetQueueInfo("default")
		return err == nil && q.Processed == n && q.Pending == 0 && q.Scheduled == 0 && q.Active == 0
	})
	q, _ := ins.GetQueueInfo("default")
	if q.Archived != 0 || q.Failed != 0 {
		t.Errorf("archived=%d failed=%d, want 0 0", q.Archived, q.Failed)
	}
	if got := strings.Count(w.logs.String(), "quotaq-worker: echo"); got != n {
		t.Errorf("%d echo lines, want %d", got, n)
	}
	if _, body := w.get(t, "/metrics"); !strings.Contains(body, `quotaq_worker_requeued_total{type="job"}`) {
		t.Errorf("no task was re-queued: the test does not test the throttle on miniredis")
	}
}

// TestShutdownLetsRunningTasksFinishThenHandsTheRestBack: on SIGTERM a
// running task may finish within --shutdown-timeout; one that does not is
// handed back to its queue.
func TestShutdownLetsRunningTasksFinishThenHandsTheRestBack(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		timeout   string
		callTakes time.Duration
		wantState asynq.TaskState // of the task after shutdown
	}{
		{"FinishesInTime", "10s", 300 * time.Millisecond, 0},
		{"HandedBack", "300ms", time.Hour, asynq.TaskStatePending},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			started := make(chan struct{}, 1)
			release := make(chan struct{})
			var finished atomic.Bool
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				select {
				case <-time.After(tc.callTakes):
					finished.Store(true)
				case <-release:
				}
			}))
			t.Cleanup(func() { close(release); upstream.Close() })

			rdb, prefix := redistest.Client(t)
			queue := "q-" + prefix
			w := startWorker(t, []string{"--redis-url", "redis://" + redistest.Addr(t), "--queues", queue, "--prefix", prefix, "--shutdown-timeout", tc.timeout}, nil)
			task, err := worker.NewHTTPCallTask(worker.HTTPCall{Tenant: "acme", URL: upstream.URL})
			if err != nil {
				t.Fatal(err)
			}
			info, err := asynq.NewClientFromRedisClient(rdb).Enqueue(task, asynq.Queue(queue), asynq.MaxRetry(0))
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-started:
			case <-time.After(20 * time.Second):
				t.Fatal("the call never started")
			}
			if code := w.stop(t); code != 0 {
				t.Fatalf("exit %d, want 0", code)
			}
			got, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(queue, info.ID)
			if tc.wantState == 0 {
				// Finished: asynq deleted it (no retention).
				if err == nil || !finished.Load() {
					t.Errorf("task after shutdown: %+v, finished=%v; want it finished and gone", got, finished.Load())
				}
				return
			}
			if err != nil || got.State != tc.wantState || got.Retried != 0 {
				t.Errorf("task after shutdown: %+v, %v; want it %v with retry count 0", got, err, tc.wantState)
			}
		})
	}
}

// TestScheduleRunsInTheWorker: --schedule enqueues the file's quota tasks,
// which this worker runs (exempt from the throttle) on the same limiter.
func TestScheduleRunsInTheWorker(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	queue := "q-" + prefix
	file := filepath.Join(t.TempDir(), "schedule.yaml")
	if err := os.WriteFile(file, []byte(`entries:
  - name: acme-up
    cron: "@every 1s"
    action: adjust
    tenant: acme
    rate: 77
`), 0o600); err != nil {
		t.Fatal(err)
	}
	startWorker(t, []string{"--redis-url", "redis://" + redistest.Addr(t), "--queues", queue, "--prefix", prefix, "--schedule", file}, nil)
	l := throttle.New(rdb, throttle.WithPrefix(prefix))
	wait.For(t, 20*time.Second, "the scheduled adjust to set acme's rate", func() bool {
		p, explicit, err := l.GetPolicy(context.Background(), "acme")
		return err == nil && explicit && p.Rate == 77
	})
}

// TestEvictingRedisIsRefusedUnlessAllowed: on a redis-server whose
// maxmemory-policy may evict keys the worker refuses to start (exit 2,
// naming the policy and both ways out); --allow-eviction or
// QUOTAQ_ALLOW_EVICTION starts it with a warning, and /healthz reports the
// policy.
func TestEvictingRedisIsRefusedUnlessAllowed(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"allkeys-lru", "volatile-lru"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			srv := redistest.NewServer(t, "maxmemory-policy "+policy)
			url := "redis://" + srv.Addr + "/0"
			var stderr wait.Buffer
			code := run(context.Background(), []string{"--redis-url", url, "--metrics-addr", ""}, env(nil), io.Discard, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), "maxmemory-policy "+policy) ||
				!strings.Contains(stderr.String(), "maxmemory-policy noeviction") || !strings.Contains(stderr.String(), "--allow-eviction") {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 naming %s, noeviction and --allow-eviction", code, stderr.String(), policy)
			}
			for name, how := range map[string]struct {
				args []string
				env  map[string]string
			}{
				"Flag": {[]string{"--allow-eviction"}, nil},
				"Env":  {nil, map[string]string{"QUOTAQ_ALLOW_EVICTION": "1"}},
			} {
				w := startWorker(t, append([]string{"--redis-url", url}, how.args...), how.env)
				if logs := w.logs.String(); !strings.Contains(logs, "EVICTION ALLOWED") || !strings.Contains(logs, "maxmemory_policy="+policy) {
					t.Errorf("%s: no loud warning naming %s:\n%s", name, policy, logs)
				}
				if code, body := w.get(t, "/healthz"); code != 200 || !strings.Contains(body, "maxmemory-policy "+policy) {
					t.Errorf("%s: /healthz = %d %q, want it to report %s", name, code, body, policy)
				}
				w.stop(t)
			}
		})
	}
}

// TestUncheckableEvictionPolicyIsWarnedAbout: a Redis user that may not run
// CONFIG (managed Redis, an ACL without +config) cannot read the policy: the
// worker says so and starts.
func TestUncheckableEvictionPolicyIsWarnedAbout(t *testing.T) {
	t.Parallel()
	admin, prefix := redistest.Client(t)
	user, pass := "noconfig-"+prefix, "pw-"+prefix
	if err := admin.Do(context.Background(), "ACL", "SETUSER", user, "on", ">"+pass, "~*", "&*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
	url := fmt.Sprintf("redis://%s:%s@%s/0", user, pass, redistest.Addr(t))
	w := startWorker(t, []string{"--redis-url", url, "--prefix", prefix, "--queues", "q-" + prefix}, nil)
	if logs := w.logs.String(); !strings.Contains(logs, "could not read Redis's maxmemory-policy") || !strings.Contains(logs, "maxmemory_policy=unknown") {
		t.Errorf("no warning that the policy could not be checked:\n%s", logs)
	}
	if code, body := w.get(t, "/healthz"); code != 200 || body != "ok\nmaxmemory-policy unknown\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
}

// TestHealthzIsTerseWhenRedisIsDown: /healthz answers 503 "redis
// unavailable" without the driver's error text (addresses, dial errors),
// which goes to the log instead.
func TestHealthzIsTerseWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t)
	w := startWorker(t, []string{"--redis-url", "redis://" + srv.Addr + "/0", "--redis-timeout", "500ms"}, nil)
	srv.Kill()
	code, body := w.get(t, "/healthz")
	if code != http.StatusServiceUnavailable || body != "redis unavailable\n" {
		t.Errorf("/healthz = %d %q, want 503 \"redis unavailable\"", code, body)
	}
	if !strings.Contains(w.logs.String(), "/healthz: Redis does not answer") {
		t.Errorf("the log does not say why /healthz failed:\n%s", w.logs.String())
	}
}

// TestMetricsListenOnLoopbackByDefault: without --metrics-addr the endpoint
// is not reachable from other hosts; :2112 given explicitly still means
// every interface.
func TestMetricsListenOnLoopbackByDefault(t *testing.T) {
	t.Parallel()
	o, err := parseFlags(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.metricsAddr != "127.0.0.1:2112" {
		t.Errorf("default --metrics-addr %q, want 127.0.0.1:2112", o.metricsAddr)
	}
	o, err = parseFlags([]string{"--metrics-addr", ":2112"}, env(nil), io.Discard)
	if err != nil || o.metricsAddr != ":2112" {
		t.Errorf("--metrics-addr :2112 gave %q, %v", o.metricsAddr, err)
	}
}

// TestCLIShowsTheWorkersDefaultPolicy: a tenant without a policy is shown by
// quotaq-enqueue with the default the worker applies (--default-rate,
// --default-burst), not the CLI's own, until a default is stored in Redis.
func TestCLIShowsTheWorkersDefaultPolicy(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	url := "redis://" + redistest.Addr(t) + "/0"
	startWorker(t, []string{"--redis-url", url, "--prefix", prefix, "--queues", "q-" + prefix, "--default-rate", "3", "--default-burst", "7"}, nil)
	show := func() string {
		var out, errb wait.Buffer
		if code := enqueuecli.Run(context.Background(), []string{"policy", "show", "nobody", "--redis-url", url, "--prefix", prefix}, strings.NewReader(""), &out, &errb); code != 0 {
			t.Fatalf("policy show: exit %d, %s", code, errb.String())
		}
		return out.String()
	}
	if got := show(); !strings.Contains(got, "3/s burst 7 (the default policy") {
		t.Errorf("policy show = %q, want the worker's default 3/s burst 7", got)
	}
	l := throttle.New(rdb, throttle.WithPrefix(prefix))
	if err := l.SetDefaultPolicy(context.Background(), throttle.Policy{Rate: 5, Burst: 1}); err != nil {
		t.Fatal(err)
	}
	if got := show(); !strings.Contains(got, "5/s burst 1 (the default policy") {
		t.Errorf("policy show = %q, want the stored default 5/s burst 1", got)
	}
}

// TestGoRedisLinesGoThroughTheStructuredLog: go-redis's own lines (a failed
// dial in its connection pool) come out as records of the worker's log, not
// as raw lines on stderr. Not parallel: go-redis has one logger per
// process, which each worker sets, so no other worker may start meanwhile.
func TestGoRedisLinesGoThroughTheStructuredLog(t *testing.T) {
	srv := redistest.NewServer(t)
	w := startWorker(t, []string{"--redis-url", "redis://" + srv.Addr + "/0", "--redis-timeout", "500ms", "--log-format", "json"}, nil)
	srv.Kill()
	w.get(t, "/healthz") // dials the dead server
	wait.For(t, 20*time.Second, "go-redis's pool line in the worker's log", func() bool {
		for _, line := range strings.Split(w.logs.String(), "\n") {
			if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, `"msg":"redis: connection pool: failed to dial`) {
				return true
			}
		}
		return false
	})
}

// TestMetricsThereFromStart: before any task, /metrics has every series a
// dashboard reads, at zero: the handled types' counters, the waiting tasks
// of each served queue, holds, the watched tenants' and tiers' quota, the
// scheduler's and Redis's counters.
func TestMetricsThereFromStart(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	queue := "q-" + prefix
	l := throttle.New(rdb, throttle.WithPrefix(prefix))
	if err := l.SetPolicy(context.Background(), "acme", throttle.Policy{Rate: 10, Burst: 10, Quota: 50, QuotaPeriod: time.Hour}); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, []string{"--redis-url", "redis://" + redistest.Addr(t), "--queues", queue, "--prefix", prefix,
		"--echo-types", "email:send", "--metrics-tenants", "acme, globex=gold"}, nil)
	code, body := w.get(t, "/metrics")
	for _, want := range []string{
		`quotaq_worker_allowed_total{type="http:call",via="now"} 0`,
		`quotaq_worker_rethrottled_total{type="email:send"} 0`,
		`quotaq_worker_throttle_wait_seconds_count{type="http:call"} 0`,
		`quotaq_waiting_tasks{cause="upstream",queue="` + queue + `"} 0`,
		`quotaq_waiting_tasks{cause="hold",queue="` + queue + `"} 0`,
		`quotaq_tenants_held{kind="tenant"} 0`,
		`quotaq_tenant_quota_remaining{tenant="acme"} 50`,
		`quotaq_tier_quota_remaining{tier="gold"} -1`,
		`quotaq_scheduler_actions_total{action="reset",result="failed"} 0`,
		`quotaq_redis_errors_total{kind="connection"} 0`,
		`quotaq_limiter_local_decisions_total{answer="lease"} 0`,
		`quotaq_build_info{`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
}
