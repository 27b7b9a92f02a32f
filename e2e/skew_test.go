package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
)

// TestClockSkewDoesNotMatter shows why quotaq needs no option to inject
// clock skew: the limiter never reads a worker's clock, only Redis's (TIME,
// inside the decision script). Two worker processes run against a Redis
// whose clock the test holds still, an hour behind or ahead of theirs, so
// every worker's clock is off from the limiter's by an hour and by more
// each second. They admit exactly the burst; however much time passes on
// their clocks, nothing more; when the test moves Redis's clock by 350 ms,
// exactly the 3 tokens a 10/s bucket refills in that time; after an hour
// on Redis's clock (which then runs), the rest, paced at the policy. Tasks that come back too early (their due
// time is computed from Redis's clock, their wake-up from the worker's) are
// simply put back again: counted, never run early.
//
// (The workers' own clocks still decide when asynq moves scheduled tasks
// and when asynq's leases expire; there, skew costs only extra dequeues, as
// counted here, never an admission.)
func TestClockSkewDoesNotMatter(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{-time.Hour, time.Hour} {
		t.Run(fmt.Sprintf("RedisClock%+v", skew), func(t *testing.T) {
			t.Parallel()
			m := miniredis.NewMiniRedis()
			if err := m.StartAddr("127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			t0 := time.Now().Add(skew).Truncate(time.Second)
			m.SetTime(t0)
			rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { _ = rdb.Close() })
			// no leases (--lease 0): a lease lasts as long on both clocks,
			// and Redis's stands still here, so a lease a worker did not
			// use up would keep its tokens for good
			s := &stage{env: []string{"QUOTAQ_LEASE=0", "REDIS_URL=redis://" + m.Addr() + "/0"}, rdb: rdb,
				insp: asynq.NewInspectorFromRedisClient(rdb), lim: throttle.New(rdb), up: newUpstream(t)}
			const n, burst = 16, 4
			s.policy(t, "skewed", throttle.Policy{Rate: 10, Burst: burst})
			tasks := tasksFor("skewed", "", 0, n)
			w := []*proc{startWorker(t, "A", s.env), startWorker(t, "B", s.env)}
			rethrottled := func() float64 {
				return w[0].metric("quotaq_worker_rethrottled_total") + w[1].metric("quotaq_worker_rethrottled_total")
			}
			// throttles returns how many times each task still waiting has
			// been put back (the worker counts it in the task's hash).
			throttles := func() map[string]int64 {
				keys, _ := rdb.Keys(context.Background(), "asynq:{default}:t:*").Result()
				c := map[string]int64{}
				for _, key := range keys {
					c[key], _ = rdb.HGet(context.Background(), key, "quotaq_throttles").Int64()
				}
				return c
			}
			// putBackSince reports whether every task still waiting has been
			// put back more often than in before.
			putBackSince := func(before map[string]int64) bool {
				now := throttles()
				for key, c := range now {
					if c <= before[key] {
						return false
					}
				}
				return len(now) > 0
			}
			s.enqueue(t, tasks)

			eventually(t, time.Minute, "the burst processed", func() bool { return s.up.doneFor("skewed") >= burst })
			// every throttled task comes back on the workers' clocks, too
			// early on Redis's, and is put back, at least once
			first := throttles()
			eventually(t, time.Minute, "each throttled task back and put back again", func() bool { return putBackSince(first) })
			if got := s.up.doneFor("skewed"); got != burst {
				t.Fatalf("Redis's clock stood still and %d tasks ran; only the burst of %d may", got, burst)
			}

			m.SetTime(t0.Add(350 * time.Millisecond))
			eventually(t, time.Minute, "3 more tasks after 350 ms on Redis's clock", func() bool { return s.up.doneFor("skewed") >= burst+3 })
			mark := throttles()
			eventually(t, time.Minute, "every other task put back once more", func() bool { return putBackSince(mark) })
			if got := s.up.doneFor("skewed"); got != burst+3 {
				t.Fatalf("350 ms on Redis's clock at 10/s let %d tasks run after the burst, want exactly 3", got-burst)
			}

			// an hour later on Redis's clock, which runs from then on: the
			// rest run, paced at the policy again (the late tasks do not all
			// start at the jump)
			jump := time.Now()
			ticker := time.NewTicker(10 * time.Millisecond)
			stop := make(chan struct{})
			t.Cleanup(func() { close(stop) })
			go func() {
				defer ticker.Stop()
				for {
					m.SetTime(t0.Add(time.Hour + time.Since(jump)))
					select {
					case <-ticker.C:
					case <-stop:
						return
					}
				}
			}()
			drain(t, s.up, s.insp, "default", seqsOf(tasks), time.Minute)
			f := s.up.figures(seqsOf(tasks))
			report(t, f, fmt.Sprintf("Redis's clock %v from the workers'; %.0f early returns put back", skew, rethrottled()))
			if f.Lost != 0 || f.Duplicated != 0 {
				t.Fatalf("%s", f)
			}
		})
	}
}
