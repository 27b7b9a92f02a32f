package httplimit

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
)

// Middleware limits the requests of each client. Wrap a handler with
// Handler. It is safe for concurrent use; the zero value is not usable, call
// New.
type Middleware struct {
	lim      *throttle.Limiter
	policy   throttle.Policy
	algo     throttle.Algorithm
	prefix   string
	keys     []KeyFunc
	failOpen bool
	lookup   bool
	denied   http.Handler
	log      *slog.Logger
	v6bits   int
	refusals time.Duration
	slots    *slotNames // one per request, for a key with a concurrency limit
}

// New returns a Middleware whose limits live in rdb, which may be a single
// node, a Sentinel failover client or a Cluster client. Defaults: 10
// requests in any 10 seconds per client IP (WithPolicy, WithKey), sliding
// window, prefix "quotaq-http", fail closed, refused clients refused locally
// for up to a second (WithRefusalCache). New fails only on an invalid
// policy.
func New(rdb redis.UniversalClient, opts ...Option) (*Middleware, error) {
	m := &Middleware{
		policy:   throttle.Policy{Rate: 1, Burst: 10},
		algo:     throttle.SlidingWindow,
		slots:    newSlotNames(),
		prefix:   "quotaq-http",
		lookup:   true,
		log:      slog.Default(),
		v6bits:   DefaultIPv6Prefix,
		refusals: DefaultRefusalCache,
	}
	for _, o := range opts {
		o(m)
	}
	if err := m.policy.Validate(); err != nil {
		return nil, fmt.Errorf("httplimit: policy %s: %w", m.policy, err)
	}
	if m.v6bits < 1 || m.v6bits > 128 {
		return nil, fmt.Errorf("httplimit: WithIPv6Prefix(%d): give a prefix length from 1 to 128 (64: a household or a server; 128: each address)", m.v6bits)
	}
	if len(m.keys) == 0 {
		m.keys = []KeyFunc{ClientIP()}
	}
	if m.denied == nil {
		m.denied = http.HandlerFunc(tooMany)
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.lim = throttle.New(rdb,
		throttle.WithPrefix(m.prefix),
		throttle.WithDefaultPolicy(m.policy),
		throttle.WithAlgorithm(m.algo),
		throttle.WithFailOpen(m.failOpen),
		throttle.WithRefusalCache(m.refusals),
	)
	return m, nil
}

// Limiter returns the limiter behind the middleware, to give a client its
// own policy (SetPolicy with the client's key: "ip:203.0.113.9",
// APIKeyID(k)), forgive it (Reset) or look at it (Standing).
func (m *Middleware) Limiter() *throttle.Limiter { return m.lim }

// Key returns the key the middleware gives r: the first non-empty answer of
// its KeyFuncs, with an IPv6 address grouped by its prefix (WithIPv6Prefix),
// made storable, or AnonymousKey.
func (m *Middleware) Key(r *http.Request) string {
	for _, k := range m.keys {
		if key := k(r); key != "" {
			return storable(groupIPv6(key, m.v6bits))
		}
	}
	return AnonymousKey
}

// Handler returns next behind the limit: each request spends one request of
// its client's allowance, or is refused with 429 (see WithDenied). A client
// whose policy has a Concurrency limit has at most that many requests in
// flight; one more is refused with 429 too. Every answer carries the
// client's standing in X-RateLimit-* and RateLimit headers (see the package
// documentation).
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := m.Key(r)
		slot := m.slots.next()
		res, err := m.lim.AllowRequest(r.Context(), throttle.Request{IDs: []string{key}, N: 1, Slot: slot})
		if err != nil {
			m.unavailable(w, r, next, key, err)
			return
		}
		p, known := m.policyOf(r, key)
		setHeaders(w.Header(), p, known, res)
		r = r.WithContext(withResult(r.Context(), key, res))
		if !res.Allowed {
			m.denied.ServeHTTP(w, r)
			return
		}
		if res.HoldsSlot {
			defer m.holdSlot(r, key, slot)()
		}
		next.ServeHTTP(w, r)
	})
}

// policyOf returns the policy that decided on key, for the headers.
func (m *Middleware) policyOf(r *http.Request, key string) (throttle.Policy, bool) {
	var (
		p   throttle.Policy
		err error
	)
	if m.lookup {
		p, _, err = m.lim.GetPolicy(r.Context(), key)
	} else {
		p, err = m.lim.DefaultPolicy(r.Context())
	}
	if err != nil {
		m.log.Warn("httplimit: cannot read the policy for the rate-limit headers",
			"key", key, "err", err)
		return p, false
	}
	return p, true
}

// unavailable answers a request the limiter could not decide on. A policy
// that cannot be enforced (one stored in Redis by hand) is a configuration
// error, not an outage: 500, never failing open.
func (m *Middleware) unavailable(w http.ResponseWriter, r *http.Request, next http.Handler, key string, err error) {
	if errors.Is(err, throttle.ErrInvalidPolicy) {
		m.log.Error("httplimit: the client's policy cannot be enforced, request refused (fix it with Limiter().SetPolicy or SetDefaultPolicy)",
			"key", key, "path", r.URL.Path, "err", err)
		http.Error(w, "500 Internal Server Error: rate limiter misconfigured", http.StatusInternalServerError)
		return
	}
	if m.failOpen {
		m.log.Warn("httplimit: limiter unavailable, request let through (fail open)",
			"key", key, "path", r.URL.Path, "err", err)
		next.ServeHTTP(w, r)
		return
	}
	m.log.Error("httplimit: limiter unavailable, request refused (fail closed)",
		"key", key, "path", r.URL.Path, "err", err)
	http.Error(w, "503 Service Unavailable: rate limiter unavailable", http.StatusServiceUnavailable)
}

// tooMany is the default answer to a refused request.
func tooMany(w http.ResponseWriter, r *http.Request) {
	msg := "429 Too Many Requests"
	if s := w.Header().Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			msg += fmt.Sprintf(": retry in %d s", n)
		}
	}
	http.Error(w, msg, http.StatusTooManyRequests)
}
