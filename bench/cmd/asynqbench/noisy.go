package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// noisy: a noisy tenant's big backlog at a low rate, then a quiet tenant's
// few tasks at a high rate, in the same queue: how long the quiet tenant's
// tasks wait from enqueue to start.
func noisy(ctx context.Context, w io.Writer, rdb *redis.Client, cfg config) error {
	const loud, calm = "noisy", "quiet"
	pl, pq := throttle.PerSecond(cfg.noisyRate), throttle.PerSecond(cfg.quietRate)
	fmt.Fprintf(w, "### Noisy neighbour: %d tasks of %q at %s enqueued first, then %d of %q at %s over %s; one queue, concurrency %d\n\n",
		cfg.noisy, loud, pl, cfg.quiet, calm, pq, cfg.quietOver, cfg.concurrency)
	fmt.Fprintln(w, "| enqueued | quiet p50 wait | quiet p99 wait | quiet max wait | noisy processed meanwhile | noisy dequeues meanwhile | noisy enqueue took |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, way := range enqueueWays {
		if !cfg.ways[way.key] {
			continue
		}
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			return err
		}
		l := throttle.New(rdb, throttle.WithPrefix("bq"))
		if err := l.SetPolicy(ctx, loud, pl); err != nil {
			return err
		}
		if err := l.SetPolicy(ctx, calm, pq); err != nil {
			return err
		}
		c := asynq.NewClientFromRedisClient(rdb)
		s, err := startServer(rdb, l, workerKind{throttle: true}, cfg.concurrency)
		if err != nil {
			return err
		}
		var sh *worker.Shaper
		if way.shaped {
			sh = worker.NewShaper(l, c)
		}
		start := time.Now()
		if err := enqueueAll(ctx, c, cfg.noisy, func(int) string { return loud }, sh); err != nil {
			s.stop()
			return err
		}
		took := time.Since(start)
		gap := cfg.quietOver / time.Duration(cfg.quiet)
		for i := range cfg.quiet {
			var err error
			if sh != nil {
				_, err = sh.Enqueue(ctx, newTask(calm), asynq.Queue(queue))
			} else {
				_, err = c.EnqueueContext(ctx, newTask(calm), asynq.Queue(queue))
			}
			if err != nil {
				s.stop()
				return err
			}
			if i < cfg.quiet-1 {
				time.Sleep(gap)
			}
		}
		ok := waitFor(cfg.maxTime, func() bool { return s.rec.count(calm) >= cfg.quiet })
		s.stop()
		waits := s.rec.waitsOf(calm)
		pct := func(p int) string {
			if len(waits) == 0 {
				return "-"
			}
			return waits[min(len(waits)-1, len(waits)*p/100)].Round(time.Millisecond).String()
		}
		name := way.name
		if !ok {
			name += fmt.Sprintf(" (%d of %d quiet tasks ran within %s)", len(waits), cfg.quiet, cfg.maxTime)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d | %d | %s |\n", name, pct(50), pct(99), pct(100),
			s.rec.count(loud), s.rec.dequeues.Load()-int64(len(waits)), took.Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	return nil
}
