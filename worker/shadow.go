package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/shadowrec"
	"github.com/quotaq/quotaq/throttle"
)

// Shadow mode (WithShadow; the package doc says what it does and does not
// do): how often a Throttler in shadow writes its record in Redis (an entry
// that runs out 3 intervals after its last write, and the would-be throttles
// by tenant, kept a day after the last write), and logs a summary of what it
// would have throttled.
const (
	shadowRecordEvery  = 10 * time.Second
	shadowSummaryEvery = time.Minute
	shadowCountsKept   = 24 * time.Hour
	// shadowMaxTenants bounds the tenants counted by name, in the process
	// between two records and in Redis; the others are added up.
	shadowMaxTenants = 10_000
)

// shadowMode is a Throttler's shadow state: what it would have throttled,
// not yet written to Redis and not yet logged in a summary.
type shadowMode struct {
	id      string // the worker's, in Redis
	rdb     redis.UniversalClient
	prefix  string
	record  time.Duration // shadowRecordEvery
	summary time.Duration // shadowSummaryEvery

	mu        sync.Mutex
	pending   map[string]int64 // tenant -> would-be throttles not yet written
	others    int64            // of tenants past shadowMaxTenants in pending
	window    shadowWindow     // since the last summary
	windowAt  time.Time        // when the window began
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// shadowWindow is what a summary reports.
type shadowWindow struct {
	throttled map[string]int64 // by reason
	archived  map[string]int64 // by reason
	holds     int64
	tenants   map[string]int64 // would-be throttles by tenant, at most shadowMaxTenants
}

func newShadowWindow() shadowWindow {
	return shadowWindow{throttled: map[string]int64{}, archived: map[string]int64{}, tenants: map[string]int64{}}
}

// startShadow starts writing the shadow record to rdb, asynq's Redis.
func (t *Throttler) startShadow(rdb redis.UniversalClient) {
	s := t.shadow
	s.rdb, s.prefix = rdb, t.limiter.Prefix()
	s.id = shadowWorkerID()
	s.pending, s.window, s.windowAt = map[string]int64{}, newShadowWindow(), time.Now()
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	if m := t.metrics; m != nil {
		m.shadowMode.Set(1)
	}
	t.logger.Info("worker: shadow mode: decisions are counted and logged, not enforced; every task runs")
	t.writeShadow(s.record * 3)
	go func() {
		defer close(s.done)
		tick := time.NewTicker(s.record)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			t.writeShadow(s.record * 3)
			if time.Since(s.windowAt) >= s.summary {
				t.logShadowSummary()
			}
		}
	}()
}

// stopShadow writes the last counts, takes the worker out of the record and
// logs the last summary.
func (t *Throttler) stopShadow() {
	s := t.shadow
	if s == nil || s.stop == nil {
		return
	}
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		t.writeShadow(0)
		t.logShadowSummary()
	})
}

// shadowWorkerID names this worker in the record: host, process, and a
// random part for Throttlers of one process.
func shadowWorkerID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(b)
}

// writeShadow writes the record with an entry that lasts ttl (0: removes
// it). Counts that cannot be written are kept for the next write.
func (t *Throttler) writeShadow(ttl time.Duration) {
	s := t.shadow
	s.mu.Lock()
	pending, others := s.pending, s.others
	s.pending, s.others = map[string]int64{}, 0
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := shadowrec.Write(ctx, s.rdb, s.prefix, shadowrec.Record{Worker: s.id, TTL: ttl, Keep: shadowCountsKept,
		MaxTenants: shadowMaxTenants, Throttled: pending, Others: others})
	if err == nil {
		return
	}
	t.logger.Warn("worker: shadow mode: could not record in Redis that this worker runs in shadow; quotaq-enqueue may not show it", "err", err)
	s.mu.Lock()
	defer s.mu.Unlock()
	for tenant, n := range pending {
		s.count(tenant, n)
	}
	s.others += others
}

// count adds n would-be throttles of tenant to pending; s.mu is held.
func (s *shadowMode) count(tenant string, n int64) {
	if _, ok := s.pending[tenant]; ok || len(s.pending) < shadowMaxTenants {
		s.pending[tenant] += n
		return
	}
	s.others += n
}

// logShadowSummary logs at Info what the Throttler would have throttled
// since the last summary, if anything, and starts a new window.
func (t *Throttler) logShadowSummary() {
	s := t.shadow
	s.mu.Lock()
	w, since := s.window, s.windowAt
	s.window, s.windowAt = newShadowWindow(), time.Now()
	s.mu.Unlock()
	var throttled, archived int64
	for _, n := range w.throttled {
		throttled += n
	}
	for _, n := range w.archived {
		archived += n
	}
	if throttled == 0 && archived == 0 && w.holds == 0 {
		return
	}
	t.logger.Info("worker: shadow mode: would have throttled tasks; every one ran",
		"period", time.Since(since).Round(time.Second), "throttled", throttled, "by_reason", byCount(w.throttled, 0),
		"archived", archived, "archived_by_reason", byCount(w.archived, 0), "holds_skipped", w.holds,
		"tenants", len(w.tenants), "top_tenants", byCount(w.tenants, 5))
}

// byCount renders counts as "a=3 b=1", the largest first, at most most of
// them (0: all).
func byCount(counts map[string]int64, most int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	if most > 0 && len(keys) > most {
		keys = keys[:most]
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatInt(counts[k], 10)
	}
	return strings.Join(parts, " ")
}

// shadowRun is the Middleware in shadow mode: it decides as enforcing mode
// would (see WithShadow), counts and logs what would not have run at once,
// and runs the task.
func (t *Throttler) shadowRun(ctx context.Context, task *asynq.Task, next asynq.Handler) error {
	j, err := jobOf(ctx, task)
	if err != nil {
		return err
	}
	c, err := t.chargeOf(task, j.id)
	j.tenant, j.ids, j.n = c.tenant, c.ids, c.n
	if err != nil {
		t.shadowArchived(j, c.refusal, err)
		return next.ProcessTask(ctx, task)
	}
	asked := time.Now()
	res, err := t.limiter.AllowRequest(ctx, throttle.Request{IDs: j.ids, N: j.n, Slot: j.ticket(), SlotTTL: t.slotTTL})
	if m := t.metrics; m != nil {
		m.decision.WithLabelValues(m.typ(j.task.Type())).Observe(time.Since(asked).Seconds())
	}
	switch {
	case err != nil && res.Allowed:
		t.countError(j, "limiter")
		t.logger.Warn("worker: limiter unavailable; failing open, task runs", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "err", err)
		t.countAllowed(j, "fail_open")
	case err != nil:
		t.countError(j, "limiter")
		reason := "unavailable"
		if errors.Is(err, throttle.ErrInvalidTenant) || errors.Is(err, throttle.ErrInvalidCost) || errors.Is(err, throttle.ErrInvalidPolicy) {
			reason = "invalid"
		}
		t.shadowThrottled(j, reason, 0, err)
	case res.Allowed:
		t.countAllowed(j, "now")
		if res.HoldsSlot {
			defer t.holdSlot(ctx, j)()
		}
	case res.Reason == throttle.ReasonCost:
		t.shadowArchived(j, "cost_above_burst", fmt.Errorf("worker: task type %q costs %d tokens, more than the burst of %q: it can never run (raise the burst or lower the cost)",
			j.task.Type(), j.n, res.Tenant))
	default:
		t.shadowThrottled(j, reasonLabel(res.Reason), res.RetryAfter, nil)
	}
	t.observeWait(ctx, j)
	sink := &budgetSink{}
	err = next.ProcessTask(context.WithValue(ctx, budgetKey{}, sink), task)
	if ra, ok := asRetryAfter(err); ok {
		t.stats.retryAfter.Add(1)
		if m := t.metrics; m != nil {
			m.retryAfter.WithLabelValues(m.labels(j.task.Type(), j.tenant)...).Inc()
		}
		t.shadowThrottled(j, "upstream", ra.Delay, ra.Err)
		t.shadowHoldSkipped(j, ra.Delay)
		return err // asynq retries it, as without quotaq
	}
	if d := sink.take(); d > 0 {
		t.shadowHoldSkipped(j, d)
	}
	return err
}

// shadowThrottled counts and logs a task that enforcing mode would not have
// run at once (reason as throttled_total's), which runs.
func (t *Throttler) shadowThrottled(j *job, reason string, wait time.Duration, err error) {
	t.stats.shadowThrottled.Add(1)
	if m := t.metrics; m != nil {
		m.shadowThrottled.WithLabelValues(m.labels(j.task.Type(), j.tenant, reason)...).Inc()
	}
	s := t.shadow
	s.mu.Lock()
	s.count(j.tenant, 1)
	s.window.throttled[reason]++
	if _, ok := s.window.tenants[j.tenant]; ok || len(s.window.tenants) < shadowMaxTenants {
		s.window.tenants[j.tenant]++
	}
	s.mu.Unlock()
	t.logger.Debug("worker: shadow mode: task would have been throttled; it runs", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id,
		"reason", reason, "retry_after", wait, "err", err)
}

// shadowArchived counts and logs a task that enforcing mode would have
// archived (reason as archived_total's), which runs.
func (t *Throttler) shadowArchived(j *job, reason string, err error) {
	t.stats.shadowArchived.Add(1)
	if m := t.metrics; m != nil {
		m.shadowArchived.WithLabelValues(m.typ(j.task.Type()), reason).Inc()
	}
	s := t.shadow
	s.mu.Lock()
	s.window.archived[reason]++
	s.mu.Unlock()
	t.logger.Debug("worker: shadow mode: task would have been archived; it runs", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id,
		"reason", reason, "err", err)
}

// shadowHoldSkipped counts a hold of j's tenant for d that enforcing mode
// would have applied (its upstream said stop, or that its budget is spent).
func (t *Throttler) shadowHoldSkipped(j *job, d time.Duration) {
	t.stats.shadowHoldsSkipped.Add(1)
	if m := t.metrics; m != nil {
		m.shadowHolds.WithLabelValues(m.labels(j.task.Type(), j.tenant)...).Inc()
	}
	s := t.shadow
	s.mu.Lock()
	s.window.holds++
	s.mu.Unlock()
	t.logger.Debug("worker: shadow mode: upstream asked to wait; tenant not held", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "delay", d)
}
