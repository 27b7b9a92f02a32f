package main

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// upstream is the fake API the worker's http:call tasks call, on loopback.
// Each call names its tenant and its task's number in the query
// (?tenant=T&seq=N). It records when every call arrived, per tenant, and
// answers 429 with Retry-After to a call its own token bucket for the
// tenant (see limit) has no token for, else 200. A tenant given a latency
// (see delay) is answered that long after its call arrived; the upstream
// counts the tenant's calls in flight, from arrival to answer.
type upstream struct {
	srv *http.Server
	url string // http://127.0.0.1:port/call

	mu        sync.Mutex
	buckets   map[string]*bucket
	latencies map[string]time.Duration
	tenants   map[string]*calls
}

// calls is what the upstream saw of one tenant.
type calls struct {
	arrivals []time.Time // every call, 429s included, in arrival order
	refused  int         // calls answered 429
	ok       map[int]int // task number -> calls answered 200
	lastOK   time.Time   // when the last 200 was answered
	answers  []time.Time // when each call was answered, in that order
	inFlight int         // calls arrived and not yet answered
	most     int         // the most calls in flight at once
}

// bucket is the upstream's own token bucket for one tenant.
type bucket struct {
	rate   float64 // tokens a second
	burst  float64
	tokens float64
	at     time.Time // when tokens was right
}

// take spends a token at now, or returns how long until one is there.
func (b *bucket) take(now time.Time) (time.Duration, bool) {
	b.tokens = math.Min(b.burst, b.tokens+b.rate*now.Sub(b.at).Seconds())
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second)), false
}

// startUpstream listens on a free loopback port and serves.
func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fake upstream: %w", err)
	}
	u := &upstream{url: "http://" + ln.Addr().String() + "/call", buckets: map[string]*bucket{},
		latencies: map[string]time.Duration{}, tenants: map[string]*calls{}}
	u.srv = &http.Server{Handler: http.HandlerFunc(u.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

func (u *upstream) close() { _ = u.srv.Close() }

// limit gives tenant a bucket of rate tokens a second and burst tokens,
// full; a tenant without one is never refused.
func (u *upstream) limit(tenant string, rate float64, burst int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.buckets[tenant] = &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), at: time.Now()}
}

// delay makes the upstream answer tenant's calls d after they arrive (0:
// at once).
func (u *upstream) delay(tenant string, d time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.latencies[tenant] = d
}

// callURL is the URL of task seq of tenant.
func (u *upstream) callURL(tenant string, seq int) string {
	return u.url + "?tenant=" + url.QueryEscape(tenant) + "&seq=" + strconv.Itoa(seq)
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	tenant := r.URL.Query().Get("tenant")
	seq, err := strconv.Atoi(r.URL.Query().Get("seq"))
	if tenant == "" || err != nil {
		http.Error(w, "want ?tenant=T&seq=N", http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	c := u.tenants[tenant]
	if c == nil {
		c = &calls{ok: map[int]int{}}
		u.tenants[tenant] = c
	}
	c.arrivals = append(c.arrivals, now)
	c.inFlight++
	c.most = max(c.most, c.inFlight)
	latency := u.latencies[tenant]
	wait, ok := time.Duration(0), true
	if b := u.buckets[tenant]; b != nil {
		wait, ok = b.take(now)
	}
	if !ok {
		c.refused++
	}
	u.mu.Unlock()
	time.Sleep(latency)
	u.mu.Lock()
	answered := time.Now()
	c.inFlight--
	c.answers = append(c.answers, answered)
	if ok {
		c.ok[seq]++
		c.lastOK = answered
	}
	u.mu.Unlock()
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// seen is a copy of what the upstream saw of tenant.
type seen struct {
	arrivals   []time.Time
	refused    int
	done       int         // tasks answered 200 at least once
	duplicated int         // 200 answers beyond the first of a task
	lastOK     time.Time   // when the last 200 was answered
	answers    []time.Time // when each call was answered
	most       int         // the most calls in flight at once
}

func (u *upstream) seen(tenant string) seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.tenants[tenant]
	if c == nil {
		return seen{}
	}
	s := seen{arrivals: append([]time.Time(nil), c.arrivals...), refused: c.refused, lastOK: c.lastOK,
		answers: append([]time.Time(nil), c.answers...), most: c.most}
	for _, n := range c.ok {
		s.done++
		s.duplicated += n - 1
	}
	return s
}

// done returns how many tasks of tenant were answered 200 at least once.
func (u *upstream) done(tenant string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c := u.tenants[tenant]; c != nil {
		return len(c.ok)
	}
	return 0
}
