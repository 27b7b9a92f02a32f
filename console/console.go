// Package console is quotaq's live web page: a table of every tenant
// (sortable, filterable, paginated on the server) and a page per tenant with
// the rate its tasks start at against its policy, drawn live, what its
// waiting tasks wait for and when the next is due, its hold and its quota.
// quotaq-worker serves it at /ui/ on its --metrics-addr; a program that runs
// its own asynq server with worker.Throttler mounts it on its own mux:
//
//	c := console.New(limiter, rdb, console.WithLogger(logger))
//	defer c.Close()
//	mux.Use(throttler.Middleware, c.Middleware) // counts the tasks that start
//	http.Handle("/ui/", http.StripPrefix("/ui", c))
//
// The numbers are those of quotaq-enqueue status --json and standing --json:
// the same code (internal/tenantstatus) computes them. The table reads a
// snapshot of every tenant, taken again in the background when a request
// finds it older than WithRefresh (never more often than the last snapshot
// took, times four), so a page request costs no Redis round trip however
// many tenants there are; a tenant's own page reads Redis on every poll.
//
// The page only reads, unless WithActions turns on its actions (reset a
// quota, release a hold, change a policy): each is then confirmed in the
// page, sent as a POST that must come from the page itself (same origin and
// a per-process token), and logged.
//
// The page's assets are embedded: nothing is built or downloaded.
package console

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
)

//go:embed assets
var assets embed.FS

// Console serves the page and its JSON. Create it with New and Close it
// when done; it is safe for concurrent use.
type Console struct {
	lim     *throttle.Limiter
	rdb     redis.UniversalClient
	insp    *asynq.Inspector
	log     *slog.Logger
	actions bool
	token   string // the CSRF token the page sends with its actions
	refresh time.Duration
	queues  []string
	hosts   map[string]bool // WithAllowedHosts, and localhost

	idx   index
	rates *rates
	mux   *http.ServeMux
	ctx   context.Context // done on Close
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// Option configures a Console.
type Option func(*Console)

// WithActions turns on the page's actions (reset a quota, release a hold,
// change a policy). Default: off, the page only reads.
func WithActions(on bool) Option { return func(c *Console) { c.actions = on } }

// WithAllowedHosts names the hosts, besides IP addresses, localhost and
// this machine's name (os.Hostname), the page may be addressed to (the
// Host header): the name a reverse proxy forwards under. Requests to other
// names are refused (421), so that a site whose name resolves to this
// address can neither read the tenants nor post actions.
func WithAllowedHosts(hosts ...string) Option {
	return func(c *Console) {
		for _, h := range hosts {
			c.hosts[strings.ToLower(h)] = true
		}
	}
}

// WithLogger sets where actions and errors are logged. Default:
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *Console) { c.log = l } }

// WithRefresh sets how old the tenants table's snapshot may be before a
// request has it taken again. Default: 5s.
func WithRefresh(d time.Duration) Option { return func(c *Console) { c.refresh = d } }

// WithQueues narrows the queues whose tasks are counted. Default: every
// queue asynq knows.
func WithQueues(queues ...string) Option { return func(c *Console) { c.queues = queues } }

// New returns a Console on the limiter l and asynq's Redis rdb.
func New(l *throttle.Limiter, rdb redis.UniversalClient, opts ...Option) *Console {
	c := &Console{lim: l, rdb: rdb, log: slog.Default(), refresh: 5 * time.Second}
	c.hosts = map[string]bool{"localhost": true}
	if h, err := os.Hostname(); err == nil && h != "" {
		h = strings.ToLower(h)
		c.hosts[h] = true
		c.hosts[strings.SplitN(h, ".", 2)[0]] = true
	}
	for _, o := range opts {
		o(c)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	c.token = hex.EncodeToString(b[:])
	c.insp = asynq.NewInspectorFromRedisClient(rdb)
	ctx, cancel := context.WithCancel(context.Background())
	c.ctx, c.stop = ctx, cancel
	c.rates = newRates(rdb, l.Prefix())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.rates.flushEvery(ctx, time.Second, c.log)
	}()

	static, _ := fs.Sub(assets, "assets")
	m := http.NewServeMux()
	m.Handle("GET /", noCache(http.FileServerFS(static)))
	m.HandleFunc("GET /api/meta", c.meta)
	m.HandleFunc("GET /api/tenants", c.tenants)
	m.HandleFunc("GET /api/tenant", c.tenant)
	m.HandleFunc("GET /api/tenant/live", c.live)
	m.HandleFunc("POST /api/tenant/reset-quota", c.action("reset-quota", c.resetQuota))
	m.HandleFunc("POST /api/tenant/release-hold", c.action("release-hold", c.releaseHold))
	m.HandleFunc("POST /api/tenant/policy", c.action("set-policy", c.setPolicy))
	c.mux = m
	return c
}

// Close stops the Console's background work and flushes its last counts.
func (c *Console) Close() error {
	c.stop()
	c.wg.Wait()
	c.rates.flush(context.Background())
	return c.insp.Close()
}

// ServeHTTP serves the page at / and its JSON under /api/. Mount it under
// a path with http.StripPrefix: the page uses relative addresses.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	if err := c.hostAllowed(r); err != nil {
		writeError(w, http.StatusMisdirectedRequest, err.Error())
		return
	}
	// another site's page cannot read the answers, but could make the
	// worker and Redis work for each request it fires
	if site := r.Header.Get("Sec-Fetch-Site"); strings.HasPrefix(r.URL.Path, "/api/") && site != "" && site != "same-origin" && site != "none" {
		writeError(w, http.StatusForbidden, "the page's data is served to the page itself (Sec-Fetch-Site "+site+")")
		return
	}
	c.mux.ServeHTTP(w, r)
}

// Middleware counts the tasks that start, by tenant, for the rate chart;
// put it after the Throttler's (mux.Use(throttler.Middleware,
// c.Middleware)) so that only tasks the limiter let through count.
func (c *Console) Middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		c.rates.started(task)
		return next.ProcessTask(ctx, task)
	})
}

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// meta tells the page whether actions are on and, when they are, the token
// its POSTs carry.
func (c *Console) meta(w http.ResponseWriter, r *http.Request) {
	m := struct {
		Actions bool   `json:"actions"`
		Token   string `json:"token,omitempty"`
	}{Actions: c.actions}
	if c.actions {
		m.Token = c.token
	}
	writeJSON(w, http.StatusOK, m)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}
