package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// shapeAll enqueues n "job" tasks of tenant through s into b's queue and
// returns their infos.
func (b *testBundle) shapeAll(t testing.TB, s *worker.Shaper, tenant string, n int) []*asynq.TaskInfo {
	t.Helper()
	infos := make([]*asynq.TaskInfo, 0, n)
	for i := range n {
		task := asynq.NewTaskWithHeaders("job", fmt.Appendf(nil, `{"i":%d}`, i), map[string]string{worker.TenantHeader: tenant})
		info, err := s.Enqueue(context.Background(), task, asynq.Queue(b.queue), asynq.MaxRetry(0))
		if err != nil {
			t.Fatalf("shaped enqueue %d of %q: %v", i, tenant, err)
		}
		infos = append(infos, info)
	}
	return infos
}

// pendingBound is the most tasks of a fresh tenant a shaper may have put in
// the queue itself (not the scheduled set) by elapsed: its burst, then its
// rate.
func pendingBound(p throttle.Policy, elapsed time.Duration) int {
	return int(p.Burst) + int(p.Rate*elapsed.Seconds()) + 1
}

// TestShapedBacklogRunsOncePerTaskAtThePolicysRate: a backlog far beyond
// its tenant's rate, shaped at enqueue, waits in the scheduled set rather
// than the queue, and every task is dequeued once: it runs on the tokens
// booked for it, never refused and put back, never charged twice, nothing
// archived, and never faster than the policy.
func TestShapedBacklogRunsOncePerTaskAtThePolicysRate(t *testing.T) {
	t.Parallel()
	policy := throttle.Policy{Rate: 10, Burst: 3}
	const n = 35
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"acme": policy}, noStart: true})
	s := worker.NewShaper(b.limiter, b.client)

	start := time.Now() // before the first booking
	infos := b.shapeAll(t, s, "acme", n)
	elapsed := time.Since(start)

	pending := 0
	for k, info := range infos {
		switch info.State {
		case asynq.TaskStatePending:
			pending++
		case asynq.TaskStateScheduled:
			// due no earlier than its slot, on a whole second
			slot := start.Add(time.Duration(float64(k+1-int(policy.Burst)) / policy.Rate * float64(time.Second)))
			if info.NextProcessAt.Before(slot.Add(-time.Millisecond)) || info.NextProcessAt.Nanosecond() != 0 {
				t.Errorf("task %d scheduled at %s, before its slot %s or not on a whole second", k, info.NextProcessAt.Format(time.StampMilli), slot.Format(time.StampMilli))
			}
		default:
			t.Errorf("task %d enqueued in state %s", k, info.State)
		}
	}
	if bound := pendingBound(policy, elapsed); pending > bound {
		t.Errorf("%d of %d tasks put in the queue at once; the policy allows %d by now", pending, n, bound)
	}

	b.start(t)
	q := b.waitQueueDone(t, 30*time.Second)

	runs := b.runs.list()
	seen := map[string]int{}
	var at []time.Time
	for _, r := range runs {
		seen[r.id]++
		at = append(at, r.at)
	}
	for _, info := range infos {
		if seen[info.ID] != 1 {
			t.Errorf("task %s ran %d times, want once", info.ID, seen[info.ID])
		}
	}
	if q.Processed != n || q.Archived != 0 || q.Failed != 0 {
		t.Errorf("asynq stats: processed=%d archived=%d failed=%d, want %d 0 0", q.Processed, q.Archived, q.Failed, n)
	}
	// One dequeue per task: each was let through, at once or after a wait
	// in the worker for its exact slot (asynq's forwarder brings a whole
	// second of them at once), none put back.
	st := b.throttler.Stats()
	if st.Requeued != 0 || st.Throttled != st.WaitedInProcess || st.Allowed != n || st.Archived != 0 {
		t.Errorf("stats %+v: want %d allowed, none re-queued or archived, every throttle a wait in process", st, n)
	}
	if v := b.counter(t, "quotaq_worker_requeued_total"); v != 0 {
		t.Errorf("requeued metric %v, want 0", v)
	}
	// Never faster than the policy: the k-th run comes no earlier than
	// burst + rate × elapsed reaches k.
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	for k, ts := range at {
		if allowed := float64(policy.Burst) + policy.Rate*ts.Sub(start).Seconds(); float64(k+1) > allowed+1 {
			t.Fatalf("%d runs by %s, the policy allows %.1f", k+1, ts.Sub(start), allowed)
		}
	}
	span := at[len(at)-1].Sub(at[policy.Burst])
	t.Logf("%d runs; after the burst %.1f/s for a policy of %v/s", len(at), float64(len(at)-1-int(policy.Burst))/span.Seconds(), policy.Rate)
	// Every token was charged once: the bucket is not in debt after the
	// runs beyond what the last bookings left (a second charge per task
	// would leave it n tokens short).
	if p, err := b.limiter.Peek(context.Background(), "acme"); err != nil || p.RetryAfter > time.Second {
		t.Errorf("after the backlog: %+v %v; a second charge per task would leave %s of debt", p, err, time.Duration(n)*time.Second/10)
	}
}

// TestShapedNoisyBacklogDoesNotBlockAQuietTenant: a noisy tenant's backlog
// shaped at enqueue stays out of the queue, so a quiet tenant's tasks
// enqueued after it, in the same queue, all start before the noisy backlog
// is half through.
func TestShapedNoisyBacklogDoesNotBlockAQuietTenant(t *testing.T) {
	t.Parallel()
	noisy, quiet := throttle.Policy{Rate: 4, Burst: 2}, throttle.Policy{Rate: 1000, Burst: 100}
	const nNoisy, nQuiet = 40, 20
	b := setup(t, bundleConfig{
		policies: map[string]throttle.Policy{"noisy": noisy, "quiet": quiet},
		asynqCfg: asynq.Config{Concurrency: 2},
		noStart:  true,
	})
	s := worker.NewShaper(b.limiter, b.client)

	start := time.Now()
	b.shapeAll(t, s, "noisy", nNoisy)
	q, err := b.inspector.GetQueueInfo(b.queue)
	if err != nil {
		t.Fatal(err)
	}
	if bound := pendingBound(noisy, time.Since(start)); q.Pending > bound || q.Pending+q.Scheduled != nNoisy {
		t.Errorf("noisy backlog: %d pending, %d scheduled; want at most %d in the queue, the rest scheduled", q.Pending, q.Scheduled, bound)
	}
	b.start(t)
	quietIDs := map[string]bool{}
	for _, info := range b.shapeAll(t, s, "quiet", nQuiet) {
		quietIDs[info.ID] = true
	}
	waitFor(t, 20*time.Second, "the quiet tenant's tasks to run", func() bool {
		n := 0
		for _, r := range b.runs.list() {
			if quietIDs[r.id] {
				n++
			}
		}
		return n == nQuiet
	})
	noisyRuns := 0
	for _, r := range b.runs.list() {
		if r.tenant == "noisy" {
			noisyRuns++
		}
	}
	if noisyRuns >= nNoisy/2 {
		t.Errorf("%d of %d noisy tasks ran before the quiet tenant's %d were through; want them ahead of most of the backlog", noisyRuns, nNoisy, nQuiet)
	}
	if st := b.throttler.Stats(); st.Requeued != 0 {
		t.Errorf("stats %+v: want no task put back", st)
	}
}

// TestShaperGivesTokensBackWhenTheEnqueueFails: a booking whose task could
// not be enqueued is cancelled.
func TestShaperGivesTokensBackWhenTheEnqueueFails(t *testing.T) {
	t.Parallel()
	policy := throttle.Policy{Rate: 0.1, Burst: 2}
	tests := []struct {
		name string
		opts []asynq.Option
		want error
	}{
		{"TaskIDTaken", []asynq.Option{asynq.TaskID("taken")}, asynq.ErrTaskIDConflict},
		{"DuplicateUniqueTask", []asynq.Option{asynq.Unique(time.Minute)}, asynq.ErrDuplicateTask},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"acme": policy}, noStart: true})
			s := worker.NewShaper(b.limiter, b.client)
			task := asynq.NewTaskWithHeaders("job", []byte(`{"x":1}`), map[string]string{worker.TenantHeader: "acme"})
			// the same task enqueued plainly first: the shaped one collides
			if _, err := b.client.Enqueue(task, append([]asynq.Option{asynq.Queue(b.queue)}, tt.opts...)...); err != nil {
				t.Fatal(err)
			}
			_, err := s.Enqueue(context.Background(), task, append([]asynq.Option{asynq.Queue(b.queue)}, tt.opts...)...)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), "given back") {
				t.Fatalf("err %v, want %v saying the tokens were given back", err, tt.want)
			}
			// the bucket is full again: both tokens there
			for i := range 2 {
				if r, err := b.limiter.Allow(context.Background(), "acme"); err != nil || !r.Allowed {
					t.Fatalf("token %d after the failed enqueue: %+v %v; want the booking given back", i+1, r, err)
				}
			}
		})
	}
}

// TestShaperRefusesPastTheMaxWait: a task whose tokens are due after the
// max wait is refused with ErrMaxWait; nothing is enqueued or booked.
func TestShaperRefusesPastTheMaxWait(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"acme": {Rate: 0.1, Burst: 1}}, noStart: true})
	s := worker.NewShaper(b.limiter, b.client, worker.WithMaxWait(5*time.Second))
	ctx := context.Background()
	task := func() *asynq.Task {
		return asynq.NewTaskWithHeaders("job", nil, map[string]string{worker.TenantHeader: "acme"})
	}
	if _, err := s.Enqueue(ctx, task(), asynq.Queue(b.queue)); err != nil {
		t.Fatalf("first task, tokens there: %v", err)
	}
	_, err := s.Enqueue(ctx, task(), asynq.Queue(b.queue)) // due in 10 s
	if !errors.Is(err, worker.ErrMaxWait) || !strings.Contains(err.Error(), "max wait of 5s") || !strings.Contains(err.Error(), "the task was not enqueued") {
		t.Fatalf("second task: err %v, want ErrMaxWait naming the max wait and saying nothing was enqueued", err)
	}
	q, err := b.inspector.GetQueueInfo(b.queue)
	if err != nil {
		t.Fatal(err)
	}
	if q.Size != 1 {
		t.Errorf("queue holds %d tasks, want only the first", q.Size)
	}
	// nothing booked for the refused one: the next slot is still 10 s away, not 20
	res, err := b.limiter.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1})
	if err != nil || !res.OK || res.Delay > 10*time.Second {
		t.Errorf("next booking after the refusal: %+v %v; want due within 10s", res, err)
	}
}

// TestShaperRefusesTasksTheWorkerWouldArchive: what the middleware would
// archive is refused at enqueue, and nothing is enqueued; exempt tasks pass
// as they are.
func TestShaperRefusesTasksTheWorkerWouldArchive(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"acme": {Rate: 10, Burst: 2}}, noStart: true})
	s := worker.NewShaper(b.limiter, b.client, worker.WithUntenanted(""),
		worker.WithCost(func(t *asynq.Task) int64 {
			if t.Type() == "big" {
				return 5
			}
			return 1
		}))
	tests := []struct {
		name string
		task *asynq.Task
		want string // in the error; "" for success
		is   error
	}{
		{"InvalidTenantHeader", asynq.NewTaskWithHeaders("job", nil, map[string]string{worker.TenantHeader: ""}), "header", throttle.ErrInvalidTenant},
		{"InvalidPayloadTenant", asynq.NewTask("job", []byte(`{"tenant":7}`)), "payload", throttle.ErrInvalidTenant},
		{"NoTenantRefused", asynq.NewTask("job", []byte(`{}`)), "has no tenant", nil},
		{"CostAboveBurst", asynq.NewTaskWithHeaders("big", nil, map[string]string{worker.TenantHeader: "acme"}), "can never run", throttle.ErrInvalidCost},
		{"ExemptPasses", asynq.NewTask("quotaq:quota:reset", nil), "", nil},
		{"PayloadTenantShaped", asynq.NewTask("job", []byte(`{"tenant":"acme"}`)), "", nil},
	}
	enqueued := 0
	for _, tt := range tests {
		info, err := s.Enqueue(context.Background(), tt.task, asynq.Queue(b.queue))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want enqueued", tt.name, err)
		case tt.want == "":
			enqueued++
			if info.Queue != b.queue {
				t.Errorf("%s: enqueued in %q", tt.name, info.Queue)
			}
		case err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "the task was not enqueued") || (tt.is != nil && !errors.Is(err, tt.is)):
			t.Errorf("%s: err %v, want one saying %q (matching %v) and nothing enqueued", tt.name, err, tt.want, tt.is)
		}
	}
	if q, err := b.inspector.GetQueueInfo(b.queue); err != nil || q.Size != enqueued {
		t.Errorf("queue: %+v %v; want exactly the %d accepted tasks", q, err, enqueued)
	}
}

// TestShaperKeepsALaterProcessTime: a task asked to run later than its
// slot runs then, not at the slot; one given its own id keeps it.
func TestShaperKeepsALaterProcessTime(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"acme": {Rate: 10, Burst: 2}}, noStart: true})
	s := worker.NewShaper(b.limiter, b.client)
	at := time.Now().Add(time.Hour).Truncate(time.Second)
	info, err := s.Enqueue(context.Background(), asynq.NewTaskWithHeaders("job", nil, map[string]string{worker.TenantHeader: "acme"}),
		asynq.Queue(b.queue), asynq.ProcessAt(at), asynq.TaskID("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "mine" || info.State != asynq.TaskStateScheduled || !info.NextProcessAt.Equal(at) {
		t.Errorf("got id %q, state %s, at %s; want \"mine\", scheduled at %s", info.ID, info.State, info.NextProcessAt, at)
	}
}
