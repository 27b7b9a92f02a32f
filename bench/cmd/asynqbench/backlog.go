package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
	"github.com/quotaq/quotaq/throttle"
)

// shaper enqueues a task at the time its tenant's tokens will be there: it
// books them with the limiter (a reservation under the task's ticket, kept
// even when granted now: Request.KeepTicket) and enqueues the task to be
// processed at their due time. The worker's middleware redeems the booking
// when the task comes, without paying again, so a throttled task is
// dequeued once instead of twice, and tasks that must wait sit in asynq's
// scheduled set, not in the queue in front of other tenants' tasks.
//
// asynq's scheduled set counts whole seconds and its forwarder moves every
// task whose second has come, so a task due at 12:00:00.9 would arrive at
// 12:00:00.0, before its tokens, and be put back: the due time is rounded up
// to the next whole second.
type shaper struct {
	l   *throttle.Limiter
	c   *asynq.Client
	seq atomic.Int64
}

func (s *shaper) enqueue(ctx context.Context, t *asynq.Task, tenant string) error {
	id := fmt.Sprintf("shaped-%d", s.seq.Add(1))
	// the worker's ticket for a task is "<queue>:<task id>"
	req := throttle.Request{IDs: []string{tenant}, Ticket: queue + ":" + id, KeepTicket: true}
	res, err := s.l.Reserve(ctx, req)
	if err != nil {
		return err
	}
	opts := []asynq.Option{asynq.Queue(queue), asynq.TaskID(id)}
	if res.Delay > 0 {
		opts = append(opts, asynq.ProcessAt(time.Now().Add(res.Delay).Truncate(time.Second).Add(time.Second)))
	}
	if _, err := s.c.EnqueueContext(ctx, t, opts...); err != nil {
		if res.OK {
			_ = s.l.CancelTicket(ctx, req)
		}
		return err
	}
	return nil
}

// stagger returns the shaped and the plain way of enqueueing, by name.
var enqueueWays = []struct {
	name   string
	shaped bool
}{
	{"as they come (middleware only)", false},
	{"shaped at enqueue (reservation + ProcessAt)", true},
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
		var sh *shaper
		if way.shaped {
			sh = &shaper{l: l, c: c}
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
