package scheduler

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/quotaq/quotaq/internal/wait"
	"github.com/redis/go-redis/v9"
)

const resetAllYAML = `
entries:
  - name: nightly
    cron: "0 0 * * *"
    action: reset
    all: true
`

// Two replicas fire the same firings at the same time: each firing is
// enqueued once, and the loser logs it as no error.
func TestTwoReplicasEnqueueOnce(t *testing.T) {
	t.Parallel()
	env := newAsynqEnv(t)
	s := mustParse(t, resetAllYAML)
	log, logs := newLogger()
	replicas := []*Scheduler{
		New(env.client(t), s, WithQueue(env.queue), WithLogger(log)),
		New(env.client(t), s, WithQueue(env.queue), WithLogger(log)),
	}
	e := s.Entries[0]
	fires := []time.Time{mustTime(t, "2026-03-01T00:00:00Z"), mustTime(t, "2026-03-02T00:00:00Z")}
	for _, fire := range fires {
		var enqueued atomic.Int32
		var wg sync.WaitGroup
		for _, r := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := r.enqueue(context.Background(), e, fire)
				if err != nil {
					t.Errorf("enqueue: %v", err)
				}
				if ok {
					enqueued.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := enqueued.Load(); n != 1 {
			t.Errorf("firing %s: enqueued by %d replicas, want 1", fire, n)
		}
	}
	want := []string{TaskID("nightly", fires[0]), TaskID("nightly", fires[1])}
	if got := env.taskIDs(t); !slices.Equal(got, want) {
		t.Errorf("queue holds %v, want %v", got, want)
	}
	info, err := env.inspector.GetQueueInfo(env.queue)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pending != 2 {
		t.Errorf("queue has %d pending tasks, want 2", info.Pending)
	}
	if n := logs.Count("already enqueued by another replica"); n != 2 {
		t.Errorf("%d \"already enqueued\" log lines, want 2:\n%s", n, logs)
	}
}

// A replica that fires after the task already ran and was deleted from the
// queue does not enqueue it again: the finished task keeps its ID.
func TestLateReplicaAfterTaskRan(t *testing.T) {
	t.Parallel()
	env := newAsynqEnv(t)
	s := mustParse(t, resetAllYAML)
	a := New(env.client(t), s, WithQueue(env.queue))
	b := New(env.client(t), s, WithQueue(env.queue))
	e := s.Entries[0]
	fire := mustTime(t, "2026-03-01T00:00:00Z")

	var runs atomic.Int32
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeQuotaReset, func(context.Context, *asynq.Task) error {
		runs.Add(1)
		return nil
	})
	srv := asynq.NewServer(env.connOpt, asynq.Config{
		Concurrency: 1, Queues: map[string]int{env.queue: 1},
		ShutdownTimeout: time.Second, LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	if ok, err := a.enqueue(context.Background(), e, fire); !ok || err != nil {
		t.Fatalf("replica a: enqueue = %v, %v; want enqueued", ok, err)
	}
	id := TaskID(e.Name, fire)
	wait.For(t, 20*time.Second, "the task to run and leave the queue", func() bool {
		ti, err := env.inspector.GetTaskInfo(env.queue, id)
		if errors.Is(err, asynq.ErrTaskNotFound) {
			return runs.Load() == 1 // deleted: what happens without a retention
		}
		return err == nil && ti.State == asynq.TaskStateCompleted
	})
	if ok, err := b.enqueue(context.Background(), e, fire); ok || err != nil {
		t.Fatalf("replica b, after the task ran: enqueue = %v, %v; want not enqueued, no error", ok, err)
	}
	ti, err := env.inspector.GetTaskInfo(env.queue, id)
	if err != nil {
		t.Fatal(err)
	}
	if ti.State != asynq.TaskStateCompleted || ti.Retention < window(e) {
		t.Errorf("task state %v retention %s, want completed and kept for at least %s", ti.State, ti.Retention, window(e))
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the task ran %d times, want 1", n)
	}
}

// Start enqueues each entry's most recent missed firing within its catch-up
// window, and no older ones.
func TestStartCatchesUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cron    string
		catchUp string
		start   string
		want    []string // fire times enqueued
	}{
		{"MissedByHalfAnHour", "0 0 * * *", "1h", "2026-03-02T00:30:00Z", []string{"2026-03-02T00:00:00Z"}},
		{"MissedTooLongAgo", "0 0 * * *", "1h", "2026-03-02T02:00:00Z", nil},
		{"CatchUpOff", "0 0 * * *", "0s", "2026-03-02T00:00:30Z", nil},
		{"OnlyTheMostRecent", "*/15 * * * *", "1h", "2026-03-02T10:50:00Z", []string{"2026-03-02T10:45:00Z"}},
		{"DueAtStart", "0 0 * * *", "1h", "2026-03-02T00:00:00Z", []string{"2026-03-02T00:00:00Z"}},
		{"LongWindow", "0 0 1 * *", "72h", "2026-03-03T12:00:00Z", []string{"2026-03-01T00:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newAsynqEnv(t)
			s := mustParse(t, `
entries:
  - name: e
    cron: "`+tt.cron+`"
    action: reset
    all: true
    catch_up: `+tt.catchUp+`
`)
			clk := newFakeClock(mustTime(t, tt.start))
			sc := New(env.client(t), s, WithQueue(env.queue), WithClock(clk))
			sc.Start()
			wait.For(t, 20*time.Second, "the loop to wait for the next firing", func() bool { return len(clk.Waiters()) == 1 })
			waitDone(t, sc.Stop())
			var want []string
			for _, w := range tt.want {
				want = append(want, TaskID("e", mustTime(t, w)))
			}
			if got := env.taskIDs(t); !slices.Equal(got, want) {
				t.Errorf("enqueued %v, want %v", got, want)
			}
		})
	}
}

// The running loop fires on the (fake) clock; woken late it fires only the
// latest due firing, and not at all when that is older than the window.
func TestRunFiresOnTheClock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cron    string
		catchUp string
		start   string
		steps   []string // the clock is set to each in turn
		want    []string // fire times enqueued
	}{
		{"EveryMinute", "* * * * *", "0s", "2026-03-02T00:00:30Z",
			[]string{"2026-03-02T00:01:00Z", "2026-03-02T00:02:00Z"},
			[]string{"2026-03-02T00:01:00Z", "2026-03-02T00:02:00Z"}},
		{"SecondsField", "*/20 * * * * *", "0s", "2026-03-02T00:00:05Z",
			[]string{"2026-03-02T00:00:20Z", "2026-03-02T00:00:40Z", "2026-03-02T00:01:00Z"},
			[]string{"2026-03-02T00:00:20Z", "2026-03-02T00:00:40Z", "2026-03-02T00:01:00Z"}},
		{"OversleptFiresLatestOnly", "* * * * *", "0s", "2026-03-02T00:00:30Z",
			[]string{"2026-03-02T00:04:10Z"},
			[]string{"2026-03-02T00:04:00Z"}},
		{"OversleptPastTheWindow", "0 * * * *", "0s", "2026-03-02T00:30:00Z",
			[]string{"2026-03-02T02:10:00Z", "2026-03-02T03:00:00Z"},
			[]string{"2026-03-02T03:00:00Z"}},
		{"LateWithinTheMinimumWindow", "0 * * * *", "0s", "2026-03-02T00:30:00Z",
			[]string{"2026-03-02T01:00:40Z"},
			[]string{"2026-03-02T01:00:00Z"}},
		// 02:30 does not exist in Berlin on 2026-03-29 (02:00 CET -> 03:00
		// CEST at 01:00Z): it fires once, when the gap ends
		{"SpringGapFiresOnceAfterIt", "CRON_TZ=Europe/Berlin 30 2 * * *", "0s", "2026-03-29T00:20:00Z",
			[]string{"2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z", "2026-03-29T02:00:00Z"},
			[]string{"2026-03-29T01:00:00Z"}},
		// 02:30 comes twice on 2026-10-25 (at 00:30Z in CEST, 01:30Z in
		// CET): one firing, one task
		{"AutumnRepeatFiresOnce", "CRON_TZ=Europe/Berlin 30 2 * * *", "0s", "2026-10-25T00:20:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z"},
			[]string{"2026-10-25T00:30:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newAsynqEnv(t)
			s := mustParse(t, `
entries:
  - name: e
    cron: "`+tt.cron+`"
    action: reset
    all: true
    catch_up: `+tt.catchUp+`
`)
			clk := newFakeClock(mustTime(t, tt.start))
			sc := New(env.client(t), s, WithQueue(env.queue), WithClock(clk))
			sc.Start()
			for _, step := range tt.steps {
				wait.For(t, 20*time.Second, "the loop to wait", func() bool { return len(clk.Waiters()) == 1 })
				clk.Set(mustTime(t, step))
				// The loop has woken once it waits again (at a later time).
				wait.For(t, 20*time.Second, "the loop to wait again", func() bool {
					w := clk.Waiters()
					return len(w) == 1 && w[0].After(mustTime(t, step))
				})
			}
			waitDone(t, sc.Stop())
			var want []string
			for _, w := range tt.want {
				want = append(want, TaskID("e", mustTime(t, w)))
			}
			slices.Sort(want)
			if got := env.taskIDs(t); !slices.Equal(got, want) {
				t.Errorf("enqueued %v, want %v", got, want)
			}
		})
	}
}

// A firing that cannot be enqueued is retried with backoff, then given up
// at the end of its window; Stop waits for it.
func TestFiringRetriesThenGivesUp(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1; no go-redis retries, to keep it quick.
	rdb := redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second,
		DialerRetries: 1, DialerRetryTimeout: time.Millisecond,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	client := asynq.NewClientFromRedisClient(rdb)
	s := mustParse(t, `
entries:
  - name: e
    cron: "0 * * * *"
    action: reset
    all: true
    catch_up: 0s
`)
	fire := mustTime(t, "2026-03-02T01:00:00Z")
	clk := newFakeClock(fire)
	log, logs := newLogger()
	m, _ := newMetrics(t)
	sc := New(client, s, WithClock(clk), WithLogger(log), WithMetrics(m))
	sc.fire(context.Background(), s.Entries[0], fire)
	// Backoffs 1, 2, 4, 8, 16, 30 s: attempts at 0, 1, 3, 7, 15, 31 s; the
	// next would be at 61 s, past the window (MinWindow, 1m).
	for i := 0; i < 5; i++ {
		wait.For(t, 20*time.Second, "a backoff", func() bool { return len(clk.Waiters()) == 1 })
		clk.Set(clk.Waiters()[0])
	}
	waitDone(t, sc.Stop())
	if n := logs.Count("enqueue failed, retrying"); n != 5 {
		t.Errorf("%d retries logged, want 5:\n%s", n, logs)
	}
	if n := logs.Count("giving up"); n != 1 || logs.Count("attempts=6") != 1 {
		t.Errorf("want one give-up after 6 attempts:\n%s", logs)
	}
	if got, want := clk.Now(), fire.Add(31*time.Second); !got.Equal(want) {
		t.Errorf("last attempt at %s, want %s", got, want)
	}
	if errs, failed := value(m.errors.WithLabelValues("e")), value(m.firings.WithLabelValues("e", "failed")); errs != 6 || failed != 1 {
		t.Errorf("metrics: %v enqueue errors, %v firings failed; want 6 and 1", errs, failed)
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	env := newAsynqEnv(t)
	s := mustParse(t, resetAllYAML)
	clk := newFakeClock(mustTime(t, "2026-03-02T12:00:00Z"))
	sc := New(env.client(t), s, WithQueue(env.queue), WithClock(clk))
	waitDone(t, sc.Stop()) // not started: done at once
	sc.Start()
	sc.Start() // no second loop
	wait.For(t, 20*time.Second, "the loop to wait", func() bool { return len(clk.Waiters()) >= 1 })
	waitDone(t, sc.Stop())
	if n := len(clk.Waiters()); n != 1 {
		t.Errorf("%d loops waited, want 1", n)
	}
	waitDone(t, sc.Stop()) // stopped twice: fine
}
