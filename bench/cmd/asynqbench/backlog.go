package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// enqueueWays are the plain and the shaped way of enqueueing (worker.Shaper:
// each task's tokens booked under its ticket, the task enqueued ProcessAt
// its slot, and redeemed by the middleware), by name; -ways picks them.
var enqueueWays = []struct {
	key    string
	name   string
	shaped bool
}{
	{"plain", "as they come (middleware only)", false},
	{"shaped", "shaped at enqueue (worker.Shaper)", true},
}

// backlog: one tenant's throttled backlog, drained at its rate.
func backlog(ctx context.Context, w io.Writer, rdb *redis.Client, cfg config) error {
	const tenant = "acme"
	policy := throttle.PerSecond(cfg.backlogRate)
	fmt.Fprintf(w, "### Throttled backlog: %d tasks of one tenant at %s, concurrency %d\n\n", cfg.backlog, policy, cfg.concurrency)
	fmt.Fprintln(w, "| enqueued | processed | archived | dequeues per processed task | re-queues | re-throttled | Redis commands per processed task | achieved rate /s | of the policy |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	var series []plotSeries
	for _, way := range enqueueWays {
		if !cfg.ways[way.key] {
			continue
		}
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			return err
		}
		l := throttle.New(rdb, throttle.WithPrefix("bq"))
		if err := l.SetPolicy(ctx, tenant, policy); err != nil {
			return err
		}
		c := asynq.NewClientFromRedisClient(rdb)
		if err := harness.ResetStats(ctx, rdb); err != nil {
			return err
		}
		t0 := time.Now()
		s, err := startServer(rdb, l, workerKind{throttle: true}, cfg.concurrency)
		if err != nil {
			return err
		}
		var sh *worker.Shaper
		if way.shaped {
			sh = worker.NewShaper(l, c)
		}
		if err := enqueueAll(ctx, c, cfg.backlog, func(int) string { return tenant }, sh); err != nil {
			s.stop()
			return err
		}
		ok := waitFor(cfg.maxTime, func() bool { return s.rec.processed.Load() >= int64(cfg.backlog) })
		counters, err := harness.ReadCounters(ctx, rdb)
		s.stop()
		if err != nil {
			return err
		}
		info, err := asynq.NewInspectorFromRedisClient(rdb).GetQueueInfo(queue)
		if err != nil {
			return err
		}
		st := s.throttler.Stats()
		starts := s.rec.startsOf(tenant)
		processed := len(starts)
		// after the first burst, the bucket admits rate/s: measure from the
		// start of the first task after the burst to the last
		achieved := 0.0
		if processed > int(policy.Burst)+1 {
			span := starts[processed-1].Sub(starts[policy.Burst])
			achieved = float64(processed-1-int(policy.Burst)) / span.Seconds()
		}
		if !ok {
			fmt.Fprintf(w, "| %s (stopped after %s) ", way.name, cfg.maxTime)
		} else {
			fmt.Fprintf(w, "| %s ", way.name)
		}
		fmt.Fprintf(w, "| %d | %d | %.2f | %d | %d | %.1f | %.2f | %.1f%% |\n", processed, info.Archived,
			float64(s.rec.dequeues.Load())/float64(max(processed, 1)), st.Requeued, st.Rethrottled,
			float64(counters.AllCalls())/float64(max(processed, 1)), achieved, 100*achieved/policy.Rate)
		series = append(series, plotSeries{name: tenant + ", " + way.name, starts: starts, policy: policy.Rate})
		_ = t0
	}
	fmt.Fprintln(w)
	if cfg.plotDir != "" {
		path := filepath.Join(cfg.plotDir, "backlog-rate.png")
		if err := plotRates(path, fmt.Sprintf("Throttled backlog: %d tasks at %s", cfg.backlog, policy), series); err != nil {
			return err
		}
		fmt.Fprintf(w, "Plot: %s\n\n", path)
	}
	return nil
}

func (r *recorder) startsOf(tenant string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := slices.Clone(r.starts[tenant])
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	return s
}

func (r *recorder) waitsOf(tenant string) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := slices.Clone(r.waits[tenant])
	slices.Sort(s)
	return s
}
