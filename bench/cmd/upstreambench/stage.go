package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
)

// tenant is one tenant of a scenario: its policy, the upstream's limit for
// it and its backlog.
type tenant struct {
	id            string
	rate          float64 // policy: tokens a second
	burst         int
	quota         int64 // policy: tasks per period (0: none)
	period        time.Duration
	concurrency   int     // policy: tasks in flight at once (0: no limit)
	upRate        float64 // the upstream's bucket (0: no limit)
	upBurst       int
	upLatency     time.Duration // the upstream answers each call this long after it arrives
	tasks         int
	enqueueFlags  []string // extra quotaq-enqueue flags (--shape)
	drainFromNote string   // what the drain time is counted from, when not the enqueue
}

func (t tenant) policy() string {
	s := fmt.Sprintf("%g/s b%d", t.rate, t.burst)
	if t.quota > 0 {
		s += fmt.Sprintf(" q%d/%s", t.quota, shortDuration(t.period))
	}
	if t.concurrency > 0 {
		s += fmt.Sprintf(" c%d", t.concurrency)
	}
	return s
}

func (t tenant) upstream() string {
	s := "no limit"
	if t.upRate > 0 {
		s = fmt.Sprintf("%g/s b%d", t.upRate, t.upBurst)
	}
	if t.upLatency > 0 {
		s = fmt.Sprintf("%s, %d ms", s, t.upLatency.Milliseconds())
	}
	return s
}

// allowed is the most a backlog can achieve: the smaller of the policy's
// and the upstream's rate.
func (t tenant) allowed() float64 {
	if t.upRate > 0 {
		return math.Min(t.rate, t.upRate)
	}
	return t.rate
}

// stage is one scenario's world: a redis-server of its own (appendonly, so
// it can be restarted from its AOF), the fake upstream, and the workers the
// scenario started.
type stage struct {
	cfg     config
	bins    *binaries
	dir     string
	srv     *redistest.Server
	env     []string
	rdb     *redis.Client
	up      *upstream
	workers []*workerProc
}

func newStage(cfg config, bins *binaries) (*stage, error) {
	dir, err := os.MkdirTemp("", "quotaq-upstreambench-")
	if err != nil {
		return nil, err
	}
	s := &stage{cfg: cfg, bins: bins, dir: dir}
	s.srv, err = redistest.Start(dir, "appendonly yes", "appendfsync always")
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("upstreambench: %w", err)
	}
	s.env = env("REDIS_URL=redis://" + s.srv.Addr + "/0")
	s.rdb = redis.NewClient(&redis.Options{Addr: s.srv.Addr})
	if s.up, err = startUpstream(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// close stops the workers, the server and the upstream.
func (s *stage) close() {
	for _, w := range s.workers {
		w.term(15 * time.Second)
	}
	if s.up != nil {
		s.up.close()
	}
	_ = s.rdb.Close()
	s.srv.Stop()
	_ = os.RemoveAll(s.dir)
}

// setUp stores t's policy with quotaq-enqueue and gives the upstream its
// bucket for t.
func (s *stage) setUp(t tenant) error {
	args := []string{"policy", "set", t.id, "--rate", strconv.FormatFloat(t.rate, 'g', -1, 64), "--burst", strconv.Itoa(t.burst)}
	if t.quota > 0 {
		args = append(args, "--quota", strconv.FormatInt(t.quota, 10), "--quota-period", t.period.String())
	}
	if t.concurrency > 0 {
		args = append(args, "--concurrency", strconv.Itoa(t.concurrency))
	}
	if err := enqueueCLI(s.bins.enqueue, s.env, nil, args...); err != nil {
		return err
	}
	if t.upRate > 0 {
		s.up.limit(t.id, t.upRate, t.upBurst)
	}
	s.up.delay(t.id, t.upLatency)
	return nil
}

// enqueue enqueues t's backlog in bulk with quotaq-enqueue --file -.
func (s *stage) enqueue(t tenant) error {
	return enqueueCLI(s.bins.enqueue, s.env, ndjson(s.up, t.id, t.tasks), append([]string{"--file", "-"}, t.enqueueFlags...)...)
}

// worker starts one more quotaq-worker on the stage's Redis, with the
// flags of -worker-flags and then flags.
func (s *stage) worker(flags ...string) (*workerProc, error) {
	args := append(slices.Clone(s.cfg.workerFlags), flags...)
	w, err := startWorker(s.bins.worker, fmt.Sprintf("w%d", len(s.workers)+1), s.env, args...)
	if err != nil {
		return nil, err
	}
	s.workers = append(s.workers, w)
	return w, nil
}

// workersUp starts n workers with flags.
func (s *stage) workersUp(n int, flags ...string) error {
	for range n {
		if _, err := s.worker(flags...); err != nil {
			return err
		}
	}
	return nil
}

// backlog sets t up, enqueues its backlog and returns when the enqueue
// began: the start of the drain.
func (s *stage) backlog(t tenant) (time.Time, error) {
	if err := s.setUp(t); err != nil {
		return time.Time{}, err
	}
	t0 := time.Now()
	return t0, s.enqueue(t)
}

// waitDone waits until every task of t was answered 200 by the upstream,
// or within passed; it reports whether they were.
func (s *stage) waitDone(t tenant, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for s.up.done(t.id) < t.tasks {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// waitFor waits until done tasks of t were answered 200, for as long as a
// drain may take.
func (s *stage) waitFor(t tenant, done int) error {
	deadline := time.Now().Add(s.cfg.maxDrain)
	for s.up.done(t.id) < done {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d tasks of %s ran within %s", s.up.done(t.id), done, t.id, s.cfg.maxDrain)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// drainAndMeasure waits for t's backlog (at most the max drain) and
// measures it, the drain counted from t0.
func (s *stage) drainAndMeasure(scenario string, t tenant, t0 time.Time, notes ...string) result {
	drained := s.waitDone(t, s.cfg.maxDrain)
	return s.measure(scenario, t, t0, drained, notes...)
}

// measure is what the upstream and the workers' counters say of t. It
// waits a second first, so a call that comes after the last one needed
// (a duplicate) is counted.
func (s *stage) measure(scenario string, t tenant, t0 time.Time, drained bool, notes ...string) result {
	gaveUp := time.Since(t0)
	time.Sleep(time.Second)
	readings := make([][]sample, len(s.workers))
	for i, w := range s.workers {
		if !w.exited() {
			w.scrape()
		}
		readings[i] = w.last()
	}
	r := result{scenario: scenario, tenant: t, seen: s.up.seen(t.id), drained: drained, t0: t0, notes: notes,
		dequeues: dequeuesOf(t.id, readings...), workers: len(s.workers)}
	r.worst = worstExcess(r.seen.arrivals, t.rate, t.burst)
	if drained {
		r.drain = r.seen.lastOK.Sub(t0)
	} else {
		r.drain = gaveUp
	}
	if n := len(r.seen.arrivals); n > 0 {
		ok := r.seen.done + r.seen.duplicated
		if span := r.seen.lastOK.Sub(r.seen.arrivals[0]).Seconds(); span > 0 && ok > t.burst {
			r.achieved = float64(ok-t.burst) / span
		}
	}
	if t.upLatency > 0 {
		r.flight = inFlight(r.seen.arrivals, r.seen.answers, r.seen.most)
	}
	if q, err := s.inspectQueue(); err == nil && q != "" {
		r.notes = append(r.notes, q)
	}
	return r
}

// inspectQueue describes what asynq still holds in the default queue when
// it is not empty.
func (s *stage) inspectQueue() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var parts []string
	for _, st := range []string{"pending", "active", "scheduled", "retry", "archived"} {
		key := "asynq:{default}:" + st
		var n int64
		var err error
		if st == "pending" || st == "active" {
			n, err = s.rdb.LLen(ctx, key).Result()
		} else {
			n, err = s.rdb.ZCard(ctx, key).Result()
		}
		if err != nil {
			return "", err
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, n))
		}
	}
	if len(parts) == 0 {
		return "", nil
	}
	return "asynq still holds: " + strings.Join(parts, ", "), nil
}

// result is one row of the report.
type result struct {
	scenario string
	tenant   tenant
	seen     seen
	worst    window
	achieved float64 // calls answered 200 beyond the burst, per second, first call to last 200
	dequeues dequeues
	flight   flight // when the upstream answers after a latency
	workers  int    // worker processes
	drained  bool
	drain    time.Duration
	t0       time.Time
	notes    []string
	err      error
}

// row renders r as a Markdown table row.
func (r result) row() string {
	t := r.tenant
	cells := []string{r.scenario, t.id, t.policy(), t.upstream(), strconv.Itoa(t.tasks)}
	if r.err != nil {
		cells = append(cells, "failed: "+strings.ReplaceAll(r.err.Error(), "\n", " "), "", "", "", "", "")
		return "| " + strings.Join(cells, " | ") + " |"
	}
	n := len(r.seen.arrivals)
	excess := "no calls"
	if n > 0 {
		e := math.Round(r.worst.Excess*10) / 10
		if e == 0 {
			e = 0 // not -0.0
		}
		excess = fmt.Sprintf("%+.1f (%d in %s)", e, r.worst.Calls, seconds(r.worst.Span))
	}
	drain := seconds(r.drain)
	if !r.drained {
		drain = fmt.Sprintf("not drained: %d/%d after %s", r.seen.done, t.tasks, seconds(r.drain))
	}
	cells = append(cells, strconv.Itoa(n), strconv.Itoa(r.seen.refused), excess,
		fmt.Sprintf("%.1f/%g (%.0f %%)", r.achieved, t.allowed(), 100*r.achieved/t.allowed()),
		fmt.Sprintf("%.2f", r.dequeues.total()/float64(t.tasks)), drain)
	return "| " + strings.Join(cells, " | ") + " |"
}

// flightRow renders r as a row of the in-flight table: what an upstream
// that answers after a latency saw of the tenant's calls in flight, and the
// throughput against the concurrency limit over the latency.
func (r result) flightRow() string {
	t := r.tenant
	cells := []string{r.scenario, t.id, t.policy(), t.upstream(), strconv.Itoa(r.workers), strconv.Itoa(t.tasks)}
	if r.err != nil {
		cells = append(cells, "failed: "+strings.ReplaceAll(r.err.Error(), "\n", " "), "", "", "", "", "", "")
		return "| " + strings.Join(cells, " | ") + " |"
	}
	f := r.flight
	target := "no limit"
	if t.concurrency > 0 {
		most := float64(t.concurrency) / t.upLatency.Seconds()
		target = fmt.Sprintf("%.0f %% of %g/s", 100*f.Throughput/most, most)
	}
	drain := seconds(r.drain)
	if !r.drained {
		drain = fmt.Sprintf("not drained: %d/%d after %s", r.seen.done, t.tasks, seconds(r.drain))
	}
	cells = append(cells, strconv.Itoa(f.Most), fmt.Sprintf("%.2f", f.Mean), fmt.Sprintf("%.1f/s", f.Throughput), target,
		strconv.Itoa(r.seen.refused), fmt.Sprintf("%.2f", r.dequeues.total()/float64(t.tasks)), drain)
	return "| " + strings.Join(cells, " | ") + " |"
}

// detail is r's note line: what the columns do not say.
func (r result) detail() string {
	if r.err != nil {
		return fmt.Sprintf("- **%s** failed: %v", r.scenario, r.err)
	}
	d := r.dequeues
	var reasons []string
	for _, k := range slices.Sorted(maps.Keys(d.throttled)) {
		reasons = append(reasons, fmt.Sprintf("%s %.0f", k, d.throttled[k]))
	}
	parts := []string{
		fmt.Sprintf("%d tasks answered 200, %d not, %d answered 200 more than once", r.seen.done, r.tenant.tasks-r.seen.done, r.seen.duplicated),
		fmt.Sprintf("dequeues: ran %.0f, told to wait %s, of those waited in the worker and ran %.0f, rethrottled %.0f",
			d.allowed, orNone(strings.Join(reasons, ", ")), d.waited, d.rethrottled),
	}
	if len(r.seen.arrivals) > 0 && r.worst.Excess > 0 {
		parts = append(parts, fmt.Sprintf("worst window from %s after the drain began", seconds(r.seen.arrivals[r.worst.First].Sub(r.t0))))
	}
	if f, c := r.flight, r.tenant.concurrency; c > 0 && len(r.seen.answers) > 0 {
		idle := time.Duration((float64(c) - f.Mean) * float64(f.Span) / float64(len(r.seen.answers)))
		parts = append(parts, fmt.Sprintf("first call to last answer %s; a slot stood idle %s per call on average (%d slots × the span, less the calls' time in flight)",
			seconds(f.Span), seconds(idle), c))
	}
	if r.tenant.drainFromNote != "" {
		parts = append(parts, "drain counted from "+r.tenant.drainFromNote)
	}
	parts = append(parts, r.notes...)
	return fmt.Sprintf("- **%s**, %s: %s.", r.scenario, r.tenant.id, strings.Join(parts, "; "))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// seconds renders d in seconds: "0.004 s", "15.2 s".
func seconds(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + " s"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
}

// shortDuration renders whole hours as "1h", whole minutes as "30m".
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
