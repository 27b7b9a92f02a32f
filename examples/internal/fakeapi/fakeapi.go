// Package fakeapi is the examples' stand-in for a third-party HTTP API with
// per-key rate limits: the kind of upstream that background jobs call and
// must not overrun. It is protected by httplimit, so it answers 429 Too Many
// Requests with Retry-After to a caller past its plan, and it counts, per API
// key, what it served and what it refused.
//
// Routes:
//
//	GET|POST /v1/work   limited per X-API-Key (else per client IP); 200 {"ok":true,...}
//	GET      /stats     unlimited; JSON {"<key>": {"served": n, "refused": n}}
//	GET      /healthz   unlimited; "ok"
package fakeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/httplimit"
	"github.com/quotaq/quotaq/throttle"
)

// KeyHeader is the request header that carries the caller's API key.
const KeyHeader = "X-API-Key"

// Plan is an API key's published limit: N requests in any window of Per.
type Plan struct {
	N   int64
	Per time.Duration
}

// Policy is the limiter policy that enforces p with a sliding window.
func (p Plan) Policy() throttle.Policy {
	return throttle.Policy{Rate: float64(p.N) / p.Per.Seconds(), Burst: p.N}
}

func (p Plan) String() string {
	if p.Per == time.Second {
		return fmt.Sprintf("%d/s", p.N)
	}
	return fmt.Sprintf("%d/%s", p.N, p.Per)
}

// ParsePlan reads "N/DURATION" ("25/1s", "600/1m"); "N/s" and "N/m" are
// short for one second and one minute.
func ParsePlan(s string) (Plan, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Plan{}, fmt.Errorf("fakeapi: plan %q: want N/DURATION, e.g. 25/1s", s)
	}
	count, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
	if err != nil || count < 1 {
		return Plan{}, fmt.Errorf("fakeapi: plan %q: %q is not a whole number of requests of at least 1", s, n)
	}
	per = strings.TrimSpace(per)
	switch per {
	case "s":
		per = "1s"
	case "m":
		per = "1m"
	}
	d, err := time.ParseDuration(per)
	if err != nil || d < time.Second {
		return Plan{}, fmt.Errorf("fakeapi: plan %q: window %q must be a duration of at least 1s", s, per)
	}
	p := Plan{N: count, Per: d}
	if err := p.Policy().Validate(); err != nil {
		return Plan{}, fmt.Errorf("fakeapi: plan %q: %w", s, err)
	}
	return p, nil
}

// ParsePlans reads "key=N/DURATION,key2=N/DURATION".
func ParsePlans(s string) (map[string]Plan, error) {
	out := map[string]Plan{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		key, plan, ok := strings.Cut(f, "=")
		if !ok || strings.TrimSpace(key) == "" {
			return nil, fmt.Errorf("fakeapi: %q: want key=N/DURATION, e.g. acme=25/1s", f)
		}
		p, err := ParsePlan(plan)
		if err != nil {
			return nil, err
		}
		out[strings.TrimSpace(key)] = p
	}
	return out, nil
}

// KeyStats are the answers the API gave one key.
type KeyStats struct {
	Served  int64 `json:"served"`
	Refused int64 `json:"refused"` // 429 Too Many Requests
}

// Server is the fake API.
type Server struct {
	limit   *httplimit.Middleware
	latency time.Duration
	handler http.Handler

	mu    sync.Mutex
	stats map[string]*KeyStats
}

// Config configures a Server. The zero value is a server whose keys may each
// make 10 requests in any 10 seconds, answering at once.
type Config struct {
	Plan    Plan            // every key's plan unless Plans has one; default 10/10s
	Plans   map[string]Plan // plans of particular API keys
	Prefix  string          // Redis key prefix; default "fakeapi"
	Latency time.Duration   // how long each answer takes, to look like work
	Logger  *slog.Logger    // default slog.Default()
}

// New returns a fake API whose limits live in rdb; it stores the plans
// there. It fails when a plan cannot be enforced or Redis cannot be reached.
func New(ctx context.Context, rdb redis.UniversalClient, cfg Config) (*Server, error) {
	if cfg.Plan == (Plan{}) {
		cfg.Plan = Plan{N: 10, Per: 10 * time.Second}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "fakeapi"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	lim, err := httplimit.New(rdb,
		httplimit.WithPrefix(cfg.Prefix),
		httplimit.WithPolicy(cfg.Plan.Policy()),
		httplimit.WithKey(keyOf, httplimit.ClientIP()),
		httplimit.WithLogger(cfg.Logger),
	)
	if err != nil {
		return nil, fmt.Errorf("fakeapi: default plan %s: %w", cfg.Plan, err)
	}
	for key, p := range cfg.Plans {
		if err := lim.Limiter().SetPolicy(ctx, apiKeyID(key), p.Policy()); err != nil {
			return nil, fmt.Errorf("fakeapi: plan %s of key %q: %w", p, key, err)
		}
	}
	s := &Server{limit: lim, latency: cfg.Latency, stats: map[string]*KeyStats{}}
	mux := http.NewServeMux()
	mux.Handle("/v1/work", s.count(lim.Handler(http.HandlerFunc(s.work))))
	mux.HandleFunc("GET /stats", s.serveStats)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	s.handler = mux
	return s, nil
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler { return s.handler }

// keyOf is the caller's key in the limiter: its API key, readable in Redis
// (this is a demo; httplimit.APIKey would store a hash).
func keyOf(r *http.Request) string {
	if k := strings.TrimSpace(r.Header.Get(KeyHeader)); k != "" {
		return apiKeyID(k)
	}
	return ""
}

func apiKeyID(key string) string { return "key:" + key }

func (s *Server) work(w http.ResponseWriter, r *http.Request) {
	if s.latency > 0 {
		select {
		case <-time.After(s.latency):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	res, key, _ := httplimit.Result(r.Context())
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "key": strings.TrimPrefix(key, "key:"), "remaining": res.Remaining})
}

// count records each /v1/work answer: served (2xx) or refused (429).
func (s *Server) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		key := strings.TrimSpace(r.Header.Get(KeyHeader))
		if key == "" {
			key = "(no key)"
		}
		s.mu.Lock()
		st := s.stats[key]
		if st == nil {
			st = &KeyStats{}
			s.stats[key] = st
		}
		switch {
		case rec.status == http.StatusTooManyRequests:
			st.Refused++
		case rec.status < 300:
			st.Served++
		}
		s.mu.Unlock()
	})
}

// Stats returns what the API answered each key so far.
func (s *Server) Stats() map[string]KeyStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]KeyStats, len(s.stats))
	for k, v := range s.stats {
		out[k] = *v
	}
	return out
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Stats()) // encoding/json sorts the keys
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}
