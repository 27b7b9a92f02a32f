package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

type bundle struct {
	rdb   *redis.Client
	lim   *throttle.Limiter
	queue string
	logs  *syncWriter
	c     *Console
}

// setup returns a Console on a fresh prefix and queue of the test's
// redis-server, and its handler served by httptest.
func setup(t *testing.T, opts ...Option) (*httptest.Server, *bundle) {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	b := &bundle{rdb: rdb, lim: throttle.New(rdb, throttle.WithPrefix(prefix)), queue: "q-" + prefix, logs: &syncWriter{}}
	logger := slog.New(slog.NewTextHandler(b.logs, nil))
	c := New(b.lim, rdb, append([]Option{WithQueues(b.queue), WithLogger(logger)}, opts...)...)
	b.c = c
	t.Cleanup(func() { _ = c.Close() })
	srv := httptest.NewServer(http.StripPrefix("/ui", c))
	t.Cleanup(srv.Close)
	return srv, b
}

// getJSON GETs url into v and returns the status.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode
}

type tablePage struct {
	Total, Matching, Page, Pages int
	Rows                         []struct {
		Tenant string
		Policy struct{ Rate float64 }
	}
	Error string
}

func (p tablePage) tenants() string {
	var ids []string
	for _, r := range p.Rows {
		ids = append(ids, r.Tenant)
	}
	return strings.Join(ids, ",")
}

func TestTenantsTable(t *testing.T) {
	t.Parallel()
	srv, b := setup(t)
	ctx := context.Background()
	for i := range 12 {
		if err := b.lim.SetPolicy(ctx, fmt.Sprintf("t%02d", i), throttle.Policy{Rate: float64(12 - i), Burst: 1}); err != nil {
			t.Fatal(err)
		}
	}
	client := asynq.NewClientFromRedisClient(b.rdb)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTaskWithHeaders("x", nil, map[string]string{"tenant": "nopolicy"}, asynq.Queue(b.queue))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, query string
		want        string // tenants on the page
		matching    int
		pages       int
	}{
		{"SortedByTenantByDefault", "per_page=3", "nopolicy,t00,t01", 13, 5},
		{"SecondPage", "per_page=3&page=2", "t02,t03,t04", 13, 5},
		{"SortedByRateDescending", "sort=rate&desc=1&per_page=2", "t00,t01", 13, 7},
		{"SortedByRate", "sort=rate&per_page=2", "t11,t10", 13, 7},
		{"FilteredByID", "filter=T1", "t10,t11", 2, 1},
		{"OnlyOwnPolicies", "state=own&per_page=50&sort=tenant&desc=1&page=1&filter=t0", "t09,t08,t07,t06,t05,t04,t03,t02,t01,t00", 10, 1},
		{"PastTheLastPage", "per_page=50&page=9", "", 13, 1},
		{"TasksCounted", "sort=pending&desc=1&per_page=1", "nopolicy", 13, 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var p tablePage
			if code := getJSON(t, srv.URL+"/ui/api/tenants?"+tt.query, &p); code != 200 {
				t.Fatalf("status %d: %s", code, p.Error)
			}
			if p.tenants() != tt.want || p.Matching != tt.matching || p.Pages != tt.pages || p.Total != 13 {
				t.Errorf("page %q (matching %d of %d, %d pages), want %q (matching %d of 13, %d pages)",
					p.tenants(), p.Matching, p.Total, p.Pages, tt.want, tt.matching, tt.pages)
			}
		})
	}
}

func TestBadRequestsNameTheValue(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	tests := []struct{ path, want string }{
		{"/ui/api/tenants?sort=colour", `sort="colour"`},
		{"/ui/api/tenants?per_page=100000", "per_page=100000: give at most 500"},
		{"/ui/api/tenants?page=0", `page="0"`},
		{"/ui/api/tenants?state=asleep", `state="asleep"`},
		{"/ui/api/tenant?id=", `id=""`},
		{"/ui/api/tenant/live?id=", `id=""`},
	}
	for _, tt := range tests {
		var e struct{ Error string }
		if code := getJSON(t, srv.URL+tt.path, &e); code != http.StatusBadRequest || !strings.Contains(e.Error, tt.want) {
			t.Errorf("GET %s: %d %q, want 400 naming %s", tt.path, code, e.Error, tt.want)
		}
	}
}

func TestPageIsServed(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	for path, want := range map[string]string{"/ui/": "<title>quotaq</title>", "/ui/app.js": "api/tenants", "/ui/style.css": "font"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) || res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: %d, CSP %q, body without %q", path, res.StatusCode, res.Header.Get("Content-Security-Policy"), want)
		}
	}
}

// TestPageAnswersOnlyItsOwnHosts: a request addressed to another site's
// name (one made to resolve to this address) is refused, reads included;
// an allowed name, localhost and an IP address are served.
func TestPageAnswersOnlyItsOwnHosts(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t, WithAllowedHosts("quotaq.internal"))
	for host, want := range map[string]int{
		"evil.example": http.StatusMisdirectedRequest, "evil.example:80": http.StatusMisdirectedRequest,
		"quotaq.internal": http.StatusOK, "localhost:2112": http.StatusOK, "127.0.0.1": http.StatusOK, "[::1]:2112": http.StatusOK,
	} {
		for _, path := range []string{"/ui/", "/ui/api/tenants"} {
			req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != want {
				t.Errorf("GET %s with Host %s: %d, want %d", path, host, res.StatusCode, want)
			}
		}
	}
}

func TestTenantIsWhatStandingSays(t *testing.T) {
	t.Parallel()
	srv, b := setup(t)
	ctx := context.Background()
	if err := b.lim.SetPolicy(ctx, "acme", throttle.Policy{Rate: 0.001, Burst: 3, Quota: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.lim.AllowN(ctx, "acme", 2); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if code := getJSON(t, srv.URL+"/ui/api/tenant?id=acme", &got); code != 200 {
		t.Fatalf("status %d: %v", code, got)
	}
	q := got["quota"].(map[string]any)
	if got["tokens"] != 1.0 || q["used"] != 2.0 || q["limit"] != 10.0 || got["tenant"] != "acme" {
		t.Errorf("tenant = %v, want 1 token and 2 of 10 used", got)
	}
}

func TestStartedTasksMakeTheRate(t *testing.T) {
	t.Parallel()
	_, b := setup(t)
	c := b.c
	h := c.Middleware(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }))
	for _, task := range []*asynq.Task{
		asynq.NewTaskWithHeaders("x", nil, map[string]string{"tenant": "acme"}),
		asynq.NewTask("x", []byte(`{"tenant":"acme"}`)),
		asynq.NewTask("x", []byte(`{"tenant":"beta"}`)),
		asynq.NewTask("x", nil), // no tenant: not counted
	} {
		if err := h.ProcessTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().Unix()
	if err := c.rates.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := c.rates.series(context.Background(), "acme", now+1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got[0]+got[1]+got[2] != 2 {
		t.Errorf("acme started %v in the last seconds, want 2 in all", got)
	}
}

// syncWriter lets the handler goroutines log into one buffer.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
