package worker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

func TestTenantOf(t *testing.T) {
	t.Parallel()
	byFunc := &Throttler{tenantFunc: func(task *asynq.Task) (string, bool) {
		if task.Type() == "billing" {
			return "from-func", true
		}
		return "", false
	}}
	cases := []struct {
		name    string
		task    *asynq.Task
		want    string
		src     tenantSource
		wantErr string
	}{
		{"Header", asynq.NewTaskWithHeaders("t", []byte(`{"tenant":"other"}`), map[string]string{"tenant": "acme"}), "acme", fromHeader, ""},
		{"HeaderWins even when invalid", asynq.NewTaskWithHeaders("t", []byte(`{"tenant":"ok"}`), map[string]string{"tenant": ""}), "", fromHeader, "empty"},
		{"Payload", asynq.NewTask("t", []byte(` {"x":1,"tenant":"acme"}`)), "acme", fromPayload, ""},
		{"PayloadNotAString", asynq.NewTask("t", []byte(`{"tenant":["a"]}`)), "", fromPayload, `is ["a"], not a string`},
		{"PayloadControlChar", asynq.NewTask("t", []byte(`{"tenant":"a\u0007b"}`)), "", fromPayload, "control character"},
		{"PayloadNullIsNone", asynq.NewTask("t", []byte(`{"tenant":null}`)), "", fromUntenanted, ""},
		{"PayloadNotJSONIsNone", asynq.NewTask("t", []byte(`tenant=acme`)), "", fromUntenanted, ""},
		{"PayloadBrokenJSONIsNone", asynq.NewTask("t", []byte(`{"tenant":"acme"`)), "", fromUntenanted, ""},
		{"Func", asynq.NewTask("billing", nil), "from-func", fromFunc, ""},
		{"None", asynq.NewTask("other", nil), "", fromUntenanted, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, src, err := byFunc.tenantOf(tc.task)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, throttle.ErrInvalidTenant) {
					t.Fatalf("err = %v, want ErrInvalidTenant containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || src != tc.src {
				t.Errorf("tenantOf = %q, %s, %v; want %q, %s", got, src, err, tc.want, tc.src)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{" 0 ", 0, true},
		{"Sun, 22 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Sun, 22 Nov 2026 11:00:00 GMT", 0, true}, // in the past
		{"-5", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{"1.5", 0, false},
	}
	for _, tc := range cases {
		got, ok := ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRetryAfterError(t *testing.T) {
	t.Parallel()
	base := errors.New("429")
	err := error(RetryAfter(3*time.Second, base))
	wrapped := errors.Join(errors.New("context"), err)
	ra, ok := asRetryAfter(wrapped)
	if !ok || ra.Delay != 3*time.Second || !errors.Is(err, base) {
		t.Errorf("asRetryAfter(%v) = %+v, %v; want delay 3s wrapping the cause", wrapped, ra, ok)
	}
	if !strings.Contains(err.Error(), "retry after 3s: 429") {
		t.Errorf("message %q", err)
	}
	if _, ok := asRetryAfter(base); ok {
		t.Error("a plain error is not a RetryAfter")
	}
}

func TestHTTPCallHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Method != http.MethodPost || r.Header.Get("X-Key") != "k" {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/429":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/429-bare":
			w.WriteHeader(http.StatusTooManyRequests)
		case "/429-budget":
			w.Header().Set("RateLimit", `"default";r=0;t=3`)
			w.WriteHeader(http.StatusTooManyRequests)
		case "/spent":
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", "5")
		case "/left":
			w.Header().Set("X-RateLimit-Remaining", "4")
			w.Header().Set("X-RateLimit-Reset", "5")
		case "/503":
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/503-bare":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/404":
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	h := NewHTTPCallHandler(srv.Client())
	task := func(path string) *asynq.Task {
		tk, err := NewHTTPCallTask(HTTPCall{Tenant: "acme", Method: "POST", URL: srv.URL + path, Header: map[string]string{"X-Key": "k"}, Body: "{}"})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	cases := []struct {
		name       string
		task       *asynq.Task
		retryAfter time.Duration // > 0: want RetryAfter with this delay
		skip       bool          // want asynq.SkipRetry
		ok         bool
		wantErr    string
		spent      time.Duration // want UpstreamSpent with this delay
	}{
		{"Success", task("/ok"), 0, false, true, "", 0},
		{"SuccessBudgetSpent", task("/spent"), 0, false, true, "", 5 * time.Second},
		{"SuccessBudgetLeft", task("/left"), 0, false, true, "", 0},
		{"TooManyRequestsWithBudget", task("/429-budget"), 3 * time.Second, false, false, "429", 0},
		{"TooManyRequests", task("/429"), 7 * time.Second, false, false, "429", 0},
		{"TooManyRequestsWithoutHeader", task("/429-bare"), DefaultRetryAfter, false, false, "429", 0},
		{"UnavailableWithRetryAfter", task("/503"), 2 * time.Second, false, false, "503", 0},
		{"UnavailableIsRetried", task("/503-bare"), 0, false, false, "503", 0},
		{"NotFoundIsArchived", task("/404"), 0, true, false, "404", 0},
		{"BadJSONIsArchived", asynq.NewTask(TypeHTTPCall, []byte(`{"url":`)), 0, true, false, "not a valid HTTPCall JSON object", 0},
		{"UnknownFieldIsArchived", asynq.NewTask(TypeHTTPCall, []byte(`{"tenant":"a","url":"http://x","methd":"GET"}`)), 0, true, false, `unknown field "methd"`, 0},
		{"RelativeURLIsArchived", asynq.NewTask(TypeHTTPCall, []byte(`{"tenant":"a","url":"/path"}`)), 0, true, false, "absolute http", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sink := &budgetSink{}
			err := h.ProcessTask(context.WithValue(context.Background(), budgetKey{}, sink), tc.task)
			if got := sink.take(); got != tc.spent {
				t.Errorf("budget spent for %s, want %s", got, tc.spent)
			}
			if tc.ok {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			ra, isRA := asRetryAfter(err)
			if (tc.retryAfter > 0) != isRA || (isRA && ra.Delay != tc.retryAfter) {
				t.Errorf("RetryAfter = %v (%v), want delay %s", ra, isRA, tc.retryAfter)
			}
			if errors.Is(err, asynq.SkipRetry) != tc.skip {
				t.Errorf("SkipRetry = %v, want %v (err %v)", !tc.skip, tc.skip, err)
			}
		})
	}
}

func TestNewHTTPCallTaskRejectsBadCalls(t *testing.T) {
	t.Parallel()
	cases := map[string]HTTPCall{
		"tenant": {URL: "http://x"},
		"method": {Tenant: "a", Method: "get", URL: "http://x"},
		"url":    {Tenant: "a", URL: "ftp://x"},
	}
	for want, c := range cases {
		if _, err := NewHTTPCallTask(c); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewHTTPCallTask(%+v) = %v, want an error naming the %s", c, err, want)
		}
	}
	tk, err := NewHTTPCallTask(HTTPCall{Tenant: "a", Upstream: "api", URL: "https://x/y"})
	if err != nil || tk.Headers()[TenantHeader] != "a" || tk.Headers()[UpstreamHeader] != "api" {
		t.Errorf("NewHTTPCallTask: %v headers %v; want tenant and upstream headers", err, tk.Headers())
	}
}

// recordLogger is an asynq.Logger that keeps what reaches it.
type recordLogger struct{ lines []string }

func (r *recordLogger) add(args []any) {
	for _, a := range args {
		r.lines = append(r.lines, a.(string))
	}
}
func (r *recordLogger) Debug(args ...any) { r.add(args) }
func (r *recordLogger) Info(args ...any)  { r.add(args) }
func (r *recordLogger) Warn(args ...any)  { r.add(args) }
func (r *recordLogger) Error(args ...any) { r.add(args) }
func (r *recordLogger) Fatal(args ...any) { r.add(args) }

func TestQuietLoggerDropsOnlyLinesAboutRequeuedTasks(t *testing.T) {
	t.Parallel()
	var set revokedSet
	set.add("id-1")
	rec := &recordLogger{}
	q := &quietLogger{next: rec, revoked: &set}
	// The exact formats of asynq v0.26 processor.go.
	q.Warn("revoke task id=id-1")
	q.Warn(`Could not remove task id=id-1 type="job" from "asynq:{q}:active" err: UNKNOWN: redis eval error: NOT FOUND; Will retry syncing`)
	q.Error(`Could not remove task id=id-1 type="job" from "asynq:{q}:active" err: UNKNOWN: redis eval error: NOT FOUND`)
	kept := []string{
		"revoke task id=id-2", // a revoke of the user's own
		`Could not remove task id=id-1 type="job" from "asynq:{q}:active" err: connection refused; Will retry syncing`,
		"Retry exhausted for task id=id-1",
	}
	q.Warn(kept[0])
	q.Warn(kept[1])
	q.Warn(kept[2])
	if strings.Join(rec.lines, "\n") != strings.Join(kept, "\n") {
		t.Errorf("lines that went through:\n%s\nwant:\n%s", strings.Join(rec.lines, "\n"), strings.Join(kept, "\n"))
	}
}

// TestQuietLoggerLetsEmptyQueuesThroughOnceAMinute: asynq's debug line for
// an idle worker, written by each of its goroutines at every check, goes
// through once, then again only after emptyQueuesEvery; other debug lines
// all go through.
func TestQuietLoggerLetsEmptyQueuesThroughOnceAMinute(t *testing.T) {
	t.Parallel()
	rec := &recordLogger{}
	q := &quietLogger{next: rec, revoked: &revokedSet{}}
	for range 100 {
		q.Debug("All queues are empty")
	}
	q.Debug("Starting processing")
	want := []string{"All queues are empty (logged once a minute at most)", "Starting processing"}
	if strings.Join(rec.lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines that went through:\n%s\nwant:\n%s", strings.Join(rec.lines, "\n"), strings.Join(want, "\n"))
	}
	q.emptyAt.Add(-int64(emptyQueuesEvery)) // a minute later
	q.Debug("All queues are empty")
	q.Debug("All queues are empty")
	if len(rec.lines) != 3 {
		t.Errorf("a minute later, %d lines went through in all, want 3: %q", len(rec.lines), rec.lines)
	}
}

func TestJitterStaysWithinItsCap(t *testing.T) {
	t.Parallel()
	th := &Throttler{jitter: 100 * time.Millisecond}
	cases := []struct{ delay, most time.Duration }{
		{0, 0},
		{50 * time.Millisecond, 5 * time.Millisecond},
		{10 * time.Second, 100 * time.Millisecond},
	}
	for _, tc := range cases {
		for range 200 {
			if j := th.jitterFor(tc.delay); j < 0 || j > tc.most {
				t.Fatalf("jitterFor(%s) = %s, want within [0, %s]", tc.delay, j, tc.most)
			}
		}
	}
}
