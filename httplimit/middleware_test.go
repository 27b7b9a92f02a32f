package httplimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// bundle is a middleware on the test's own key prefix, wrapping a handler
// that counts what reaches it.
type bundle struct {
	m       *Middleware
	h       http.Handler
	reached atomic.Int64
}

func setup(t *testing.T, opts ...Option) *bundle {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	return setupOn(t, rdb, append([]Option{WithPrefix(prefix)}, opts...)...)
}

func setupOn(t *testing.T, rdb redis.UniversalClient, opts ...Option) *bundle {
	t.Helper()
	m, err := New(rdb, opts...)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{m: m}
	b.h = m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.reached.Add(1)
		fmt.Fprintln(w, "ok")
	}))
	return b
}

func (b *bundle) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	b.h.ServeHTTP(w, r)
	return w
}

func atoi(t *testing.T, h http.Header, name string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(h.Get(name), 10, 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", name, h.Get(name), err)
	}
	return n
}

func TestEleventhRequestInTenSecondsIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t) // all defaults: 10 per 10 s per client IP
	ctx := context.Background()
	const client = "192.0.2.1"

	for i := 1; i <= 10; i++ {
		w := b.do(request(client + ":40000"))
		h := w.Header()
		if w.Code != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i, w.Code)
		}
		remaining := atoi(t, h, "X-RateLimit-Remaining")
		reset := atoi(t, h, "X-RateLimit-Reset")
		if got := h.Get("X-RateLimit-Limit"); got != "10" {
			t.Errorf("request %d: X-RateLimit-Limit %q, want 10", i, got)
		}
		if remaining != int64(10-i) {
			t.Errorf("request %d: X-RateLimit-Remaining %d, want %d", i, remaining, 10-i)
		}
		if reset < 1 || reset > 10 {
			t.Errorf("request %d: X-RateLimit-Reset %d, want 1..10 seconds", i, reset)
		}
		if got := h.Get("RateLimit-Policy"); got != `"default";q=10;w=10` {
			t.Errorf("request %d: RateLimit-Policy %q", i, got)
		}
		if got, want := h.Get("RateLimit"), fmt.Sprintf(`"default";r=%d;t=%d`, remaining, reset); got != want {
			t.Errorf("request %d: RateLimit %q, want %q", i, got, want)
		}
		if got := h.Get("Retry-After"); got != "" {
			t.Errorf("request %d: Retry-After %q on an admitted request", i, got)
		}
		// The headers say what the limiter says.
		peek, err := b.m.Limiter().Peek(ctx, "ip:"+client)
		if err != nil {
			t.Fatal(err)
		}
		if peek.Remaining != remaining {
			t.Errorf("request %d: header remaining %d, limiter remaining %d", i, remaining, peek.Remaining)
		}
	}

	w := b.do(request(client + ":40001")) // another connection, same client
	h := w.Header()
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("11th request: status %d, want 429", w.Code)
	}
	retry := atoi(t, h, "Retry-After")
	if retry < 1 || retry > 10 {
		t.Errorf("11th request: Retry-After %d, want 1..10 seconds", retry)
	}
	if got := h.Get("X-RateLimit-Remaining"); got != "0" {
		t.Errorf("11th request: X-RateLimit-Remaining %q, want 0", got)
	}
	if got := h.Get("X-RateLimit-Limit"); got != "10" {
		t.Errorf("11th request: X-RateLimit-Limit %q, want 10", got)
	}
	if got, want := h.Get("RateLimit"), fmt.Sprintf(`"default";r=0;t=%d`, retry); got != want {
		t.Errorf("11th request: RateLimit %q, want %q (t = Retry-After)", got, want)
	}
	if !strings.Contains(w.Body.String(), "429 Too Many Requests") {
		t.Errorf("11th request: body %q", w.Body.String())
	}
	peek, err := b.m.Limiter().Peek(ctx, "ip:"+client)
	if err != nil {
		t.Fatal(err)
	}
	if peek.Allowed || seconds(peek.RetryAfter) > retry {
		t.Errorf("limiter: %v, but the 429 said Retry-After %d", peek, retry)
	}
	if got := b.reached.Load(); got != 10 {
		t.Errorf("handler reached %d times, want 10", got)
	}

	// Another client has its own limit.
	if w := b.do(request("192.0.2.2:40000")); w.Code != http.StatusOK || w.Header().Get("X-RateLimit-Remaining") != "9" {
		t.Errorf("other client: status %d, remaining %q; want 200, 9", w.Code, w.Header().Get("X-RateLimit-Remaining"))
	}
}

// The window slides: the limit is back exactly when the first request of the
// window is 10 seconds old (miniredis's clock, settable). Only Redis's clock
// moves here, so the refusal cache, on this process's, is off.
func TestWindowSlidesOnTheRedisClock(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mr.SetTime(start)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	b := setupOn(t, rdb, WithRefusalCache(0))

	steps := []struct {
		at        time.Duration
		requests  int
		wantCode  int
		wantRetry string
	}{
		{0, 5, http.StatusOK, ""},
		{4 * time.Second, 5, http.StatusOK, ""},
		{4 * time.Second, 1, http.StatusTooManyRequests, "6"}, // the first 5 leave at 10 s
		{9 * time.Second, 1, http.StatusTooManyRequests, "1"},
		{10 * time.Second, 5, http.StatusOK, ""},               // the first 5 left the window
		{10 * time.Second, 1, http.StatusTooManyRequests, "4"}, // the next 5 leave at 14 s
		{14*time.Second - time.Millisecond, 1, http.StatusTooManyRequests, "1"},
		{14 * time.Second, 5, http.StatusOK, ""},
	}
	for _, s := range steps {
		mr.SetTime(start.Add(s.at))
		for i := 0; i < s.requests; i++ {
			w := b.do(request("198.51.100.7:1"))
			if w.Code != s.wantCode || w.Header().Get("Retry-After") != s.wantRetry {
				t.Fatalf("at %s: status %d Retry-After %q, want %d %q", s.at, w.Code,
					w.Header().Get("Retry-After"), s.wantCode, s.wantRetry)
			}
		}
	}
}

func TestConcurrentRequestsAdmitExactlyTheLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPolicy(throttle.Policy{Rate: 25.0 / 3600, Burst: 25})) // 25 an hour
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for i := 0; i < 80; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch w := b.do(request("203.0.113.3:1")); w.Code {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusTooManyRequests:
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 25 || refused.Load() != 55 || b.reached.Load() != 25 {
		t.Errorf("80 concurrent requests: %d admitted, %d refused, %d reached the handler; want 25, 55, 25",
			ok.Load(), refused.Load(), b.reached.Load())
	}
}

// Whatever a KeyFunc returns, the request is decided (never a panic, never
// a 500), and distinct keys keep distinct limits.
func TestBadKeysNeverFail(t *testing.T) {
	t.Parallel()
	keys := []string{
		"",
		strings.Repeat("k", throttle.MaxTenantLen),
		strings.Repeat("k", throttle.MaxTenantLen+1),
		strings.Repeat("é", 1000),
		"ctl\x00zero", "new\nline", "del\x7f", "\x80\xffbad utf8",
		"{hash}tag", "a:b:c", "%7B", "}", "*", "?", "[a-z]",
		"sha256:" + strings.Repeat("0", 64),
	}
	var current atomic.Value
	b := setup(t, WithPolicy(throttle.Policy{Rate: 0.01, Burst: 2}),
		WithKey(func(*http.Request) string { return current.Load().(string) }))
	seen := map[string]string{}
	for _, k := range keys {
		current.Store(k)
		r := request("192.0.2.1:1")
		stored := b.m.Key(r)
		if err := throttle.ValidateTenant(stored); err != nil {
			t.Errorf("key %q is stored as %q: %v", k, stored, err)
		}
		if prev, dup := seen[stored]; dup {
			t.Errorf("keys %q and %q share the stored key %q", prev, k, stored)
		}
		seen[stored] = k
		for i, want := range []int{200, 200, 429} {
			w := b.do(r)
			if w.Code != want {
				t.Errorf("key %q, request %d: status %d, want %d", k, i+1, w.Code, want)
			}
		}
	}
}

func FuzzKey(f *testing.F) {
	for _, s := range []string{"", "192.0.2.1", "\x00", strings.Repeat("x", 300), "{}", "\xff"} {
		f.Add(s, s)
	}
	rdb, prefix := redistest.Client(f)
	m, err := New(rdb, WithPrefix(prefix), WithKey(APIKey("X-API-Key"), func(r *http.Request) string {
		return r.Header.Get("X-User")
	}, ForwardedFor(mustPrefixes(f, "0.0.0.0/0")...)))
	if err != nil {
		f.Fatal(err)
	}
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	f.Fuzz(func(t *testing.T, user, xff string) {
		r := request("10.0.0.1:1")
		r.Header["X-User"] = []string{user}
		r.Header["X-Forwarded-For"] = []string{xff}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK && w.Code != http.StatusTooManyRequests {
			t.Fatalf("user %q xff %q: status %d", user, xff, w.Code)
		}
		if w.Header().Get("RateLimit") == "" {
			t.Fatalf("user %q xff %q: no RateLimit header", user, xff)
		}
	})
}

func mustPrefixes(tb testing.TB, s string) []netip.Prefix {
	tb.Helper()
	p, err := ParsePrefixes(s)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestKeyFuncsAreTriedInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPolicy(throttle.Policy{Rate: 0.01, Burst: 1}),
		WithKey(APIKey("X-API-Key"), ClientIP()))
	tests := []struct {
		name    string
		r       *http.Request
		wantKey string
		want    int
	}{
		{"FirstWithKey", request("192.0.2.1:1", "X-API-Key", "alpha"), APIKeyID("alpha"), 200},
		{"SameKeyOtherAddress", request("192.0.2.2:1", "X-API-Key", "alpha"), APIKeyID("alpha"), 429},
		{"OtherKeySameAddress", request("192.0.2.1:1", "X-API-Key", "beta"), APIKeyID("beta"), 200},
		{"NoKeyFallsBackToAddress", request("192.0.2.1:1"), "ip:192.0.2.1", 200},
		{"NoKeyAgain", request("192.0.2.1:1"), "ip:192.0.2.1", 429},
	}
	for _, tt := range tests { // in order: each step depends on the ones before
		if got := b.m.Key(tt.r); got != tt.wantKey {
			t.Errorf("%s: key %q, want %q", tt.name, got, tt.wantKey)
		}
		if w := b.do(tt.r); w.Code != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, w.Code, tt.want)
		}
	}
	none := setup(t, WithKey(func(*http.Request) string { return "" }))
	if got := none.m.Key(request("192.0.2.1:1")); got != AnonymousKey {
		t.Errorf("no KeyFunc names the client: key %q, want %q", got, AnonymousKey)
	}
}

func TestClientsOwnPolicyIsInTheHeaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name       string
		lookup     bool
		wantLimit  string
		wantPolicy string
	}{
		{"LookupOn", true, "100", `"default";q=100;w=1`},
		// Without the lookup the headers describe the default policy.
		{"LookupOff", false, "10", `"default";q=10;w=10`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, WithKey(APIKey("X-API-Key")), WithPolicyLookup(tt.lookup))
			if err := b.m.Limiter().SetPolicy(ctx, APIKeyID("gold"), throttle.PerSecond(100)); err != nil {
				t.Fatal(err)
			}
			w := b.do(request("192.0.2.1:1", "X-API-Key", "gold"))
			h := w.Header()
			if w.Code != 200 || h.Get("X-RateLimit-Remaining") != "99" {
				t.Fatalf("status %d, remaining %q; want 200, 99 (the key's own policy decides)", w.Code, h.Get("X-RateLimit-Remaining"))
			}
			if h.Get("X-RateLimit-Limit") != tt.wantLimit || h.Get("RateLimit-Policy") != tt.wantPolicy {
				t.Errorf("X-RateLimit-Limit %q RateLimit-Policy %q, want %q %q",
					h.Get("X-RateLimit-Limit"), h.Get("RateLimit-Policy"), tt.wantLimit, tt.wantPolicy)
			}
			w = b.do(request("192.0.2.1:1", "X-API-Key", "plain"))
			if w.Header().Get("X-RateLimit-Limit") != "10" || w.Header().Get("X-RateLimit-Remaining") != "9" {
				t.Errorf("key without a policy: limit %q remaining %q, want 10, 9",
					w.Header().Get("X-RateLimit-Limit"), w.Header().Get("X-RateLimit-Remaining"))
			}
		})
	}
}

func TestQuota(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPolicy(throttle.Policy{Rate: 100, Burst: 100, Quota: 3, QuotaPeriod: 24 * time.Hour}))
	for i := 1; i <= 3; i++ {
		w := b.do(request("192.0.2.1:1"))
		h := w.Header()
		reset := atoi(t, h, "X-RateLimit-Reset")
		if w.Code != 200 || h.Get("X-RateLimit-Limit") != "3" || atoi(t, h, "X-RateLimit-Remaining") != int64(3-i) ||
			reset < 1 || reset > 86400 {
			t.Fatalf("request %d: status %d, X-RateLimit %q/%q/%d; want 200 and the quota: 3/%d/<=1 day",
				i, w.Code, h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining"), reset, 3-i)
		}
		if got := h.Get("RateLimit-Policy"); got != `"default";q=100;w=1, "quota";q=3;w=86400` {
			t.Errorf("request %d: RateLimit-Policy %q", i, got)
		}
		if got, want := h.Get("RateLimit"), fmt.Sprintf(`"default";r=%d;t=1, "quota";r=%d;t=%d`, 100-i, 3-i, reset); got != want {
			t.Errorf("request %d: RateLimit %q, want %q", i, got, want)
		}
	}
	w := b.do(request("192.0.2.1:1"))
	retry := atoi(t, w.Header(), "Retry-After")
	if w.Code != http.StatusTooManyRequests || retry < 1 || retry > 86400 {
		t.Fatalf("4th request: status %d Retry-After %d, want 429 until the quota period ends", w.Code, retry)
	}
	if got := w.Header().Get("RateLimit"); !strings.HasSuffix(got, fmt.Sprintf(`"quota";r=0;t=%d`, retry)) {
		t.Errorf("4th request: RateLimit %q, want the quota's t = Retry-After %d", got, retry)
	}
	res, _, ok := Result(httptest.NewRequest("GET", "/", nil).Context())
	if ok || res.Allowed {
		t.Errorf("Result of a request the middleware never saw: %v %v", res, ok)
	}
}

func TestTokenBucketAlgorithm(t *testing.T) {
	t.Parallel()
	b := setup(t, WithAlgorithm(throttle.TokenBucket), WithPolicy(throttle.Policy{Rate: 0.01, Burst: 3}))
	for i, want := range []int{200, 200, 200, 429} {
		w := b.do(request("192.0.2.1:1"))
		if w.Code != want {
			t.Fatalf("request %d: status %d, want %d", i+1, w.Code, want)
		}
		if want == 429 {
			retry := atoi(t, w.Header(), "Retry-After")
			if retry < 99 || retry > 100 {
				t.Errorf("Retry-After %d, want ~100 s (one token at 0.01/s)", retry)
			}
		}
		if got := w.Header().Get("RateLimit-Policy"); got != `"default";q=3;w=300` {
			t.Errorf("RateLimit-Policy %q", got)
		}
	}
}

func TestDeniedHandlerSeesTheDecision(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPolicy(throttle.Policy{Rate: 0.01, Burst: 1}),
		WithDenied(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			res, key, ok := Result(r.Context())
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusTooManyRequests)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
				"key":  key, "ok": ok, "reason": res.Reason.String(),
			})
		})))
	b.do(request("192.0.2.1:1"))
	w := b.do(request("192.0.2.1:1"))
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	if w.Code != 429 || body["key"] != "ip:192.0.2.1" || body["ok"] != true || body["reason"] != "rate" ||
		w.Header().Get("Retry-After") == "" {
		t.Errorf("status %d, body %v, Retry-After %q", w.Code, body, w.Header().Get("Retry-After"))
	}
}

func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	port, err := redistest.FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		open     bool
		wantCode int
		reached  int64
	}{
		{"FailClosedAnswers503", false, http.StatusServiceUnavailable, 0},
		{"FailOpenLetsThrough", true, http.StatusOK, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1, DialTimeout: time.Second})
			t.Cleanup(func() { _ = rdb.Close() })
			var seen bool
			m, err := New(rdb, WithFailOpen(tt.open), WithLogger(nil))
			if err != nil {
				t.Fatal(err)
			}
			reached := int64(0)
			h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reached++
				_, _, seen = Result(r.Context())
			}))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("192.0.2.1:1"))
			if w.Code != tt.wantCode || reached != tt.reached {
				t.Errorf("status %d, handler reached %d times; want %d, %d", w.Code, reached, tt.wantCode, tt.reached)
			}
			if w.Header().Get("X-RateLimit-Remaining") != "" || w.Header().Get("Retry-After") != "" || seen {
				t.Errorf("headers %v / Result seen %v: nothing is known without Redis", w.Header(), seen)
			}
		})
	}
}

// A default policy stored in Redis that cannot be enforced is a
// configuration error: 500, even with WithFailOpen(true).
func TestInvalidStoredPolicyNeverFailsOpen(t *testing.T) {
	t.Parallel()
	for _, open := range []bool{false, true} {
		t.Run(fmt.Sprintf("FailOpen=%v", open), func(t *testing.T) {
			t.Parallel()
			rdb, prefix := redistest.Client(t)
			if err := rdb.HSet(context.Background(), prefix+":default-policy", "rate", "NaN", "t", 1, "b", 10, "q", 0, "qp", 0).Err(); err != nil {
				t.Fatal(err)
			}
			b := setupOn(t, rdb, WithPrefix(prefix), WithFailOpen(open), WithLogger(nil))
			if w := b.do(request("192.0.2.1:1")); w.Code != http.StatusInternalServerError || b.reached.Load() != 0 {
				t.Errorf("status %d, handler reached %d times; want 500, 0", w.Code, b.reached.Load())
			}
		})
	}
}

func TestNewRejectsAnInvalidPolicy(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Client(t)
	_, err := New(rdb, WithPolicy(throttle.Policy{Rate: 0, Burst: 10}))
	if !errors.Is(err, throttle.ErrInvalidPolicy) || !strings.HasPrefix(err.Error(), "httplimit: ") || !strings.Contains(err.Error(), "rate") {
		t.Errorf("New with rate 0: %v, want an httplimit error wrapping ErrInvalidPolicy naming the rate", err)
	}
}

// Through a real server and client: the address comes from the connection.
func TestOverTheNetwork(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPolicy(throttle.Policy{Rate: 0.01, Burst: 2}))
	srv := httptest.NewServer(b.h)
	t.Cleanup(srv.Close)
	var codes []int
	for i := 0; i < 3; i++ {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.Header.Get("RateLimit") == "" || resp.Header.Get("X-RateLimit-Limit") != "2" {
			t.Errorf("response %d: headers %v", i+1, resp.Header)
		}
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Errorf("statuses %v, want [200 200 429]", codes)
	}
}
