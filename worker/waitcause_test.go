package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/asynqrequeue"
	"github.com/quotaq/quotaq/internal/enqueuecli"
	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// Tasks put back for each cause are counted under it, alike in the
// queue's totals (WaitingByQueue), in quotaq_waiting_tasks and in each
// tenant's standing (quotaq-enqueue standing, text and --json): a booking
// at the tenant's own rate is "rate", at its upstream's tighter rate
// "upstream", a quota used up "quota", a hold "hold", all concurrency
// slots taken "concurrency".
func TestWaitingTasksAreCountedByCause(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// tenant names of this test's own: put-back tasks are indexed by queue
	// and tenant, outside the limiter's prefix
	name := func(s string) string { return s + "-" + uniq(t) }
	api := name("api")
	tenants := map[asynqrequeue.Cause]string{
		asynqrequeue.CauseRate: name("slow"), asynqrequeue.CauseUpstream: name("caller"), asynqrequeue.CauseQuota: name("capped"),
		asynqrequeue.CauseHold: name("held"), asynqrequeue.CauseConcurrency: name("narrow"),
	}
	free := throttle.Policy{Rate: 100, Burst: 100}
	release := make(chan struct{})
	b := setup(t, bundleConfig{
		policies: map[string]throttle.Policy{
			tenants[asynqrequeue.CauseRate]:        {Rate: 0.001, Burst: 1},
			tenants[asynqrequeue.CauseUpstream]:    free,
			throttle.Upstream(api):                 {Rate: 0.001, Burst: 1},
			tenants[asynqrequeue.CauseQuota]:       {Rate: 100, Burst: 100, Quota: 2, QuotaPeriod: time.Hour},
			tenants[asynqrequeue.CauseHold]:        free,
			tenants[asynqrequeue.CauseConcurrency]: {Rate: 100, Burst: 100, Concurrency: 1},
		},
		opts: []worker.Option{worker.WithAllowedUpstreams(api), worker.WithSlotTTL(time.Hour)},
		handler: func(ctx context.Context, task *asynq.Task) error {
			if task.Headers()[worker.TenantHeader] == tenants[asynqrequeue.CauseConcurrency] {
				<-release // holds its slot until the test ends
			}
			return nil
		},
		noStart: true,
	})
	t.Cleanup(func() { close(release) }) // before the server's shutdown, which waits for its handlers
	b.start(t)
	b.reg.MustRegister(b.throttler.StateCollector([]string{b.queue}, worker.StateInterval(0)))
	if err := b.limiter.Hold(ctx, tenants[asynqrequeue.CauseHold], time.Hour); err != nil {
		t.Fatal(err)
	}
	for cause, tenant := range tenants {
		for range 3 {
			headers := map[string]string{worker.TenantHeader: tenant}
			if cause == asynqrequeue.CauseUpstream {
				headers[worker.UpstreamHeader] = api
			}
			if _, err := b.client.Enqueue(asynq.NewTaskWithHeaders("job", nil, headers), asynq.Queue(b.queue)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// of 3 tasks each: one runs (or holds the slot), two wait; the quota
	// lets two run; the hold none
	want := asynqrequeue.ByCause{Rate: 2, Upstream: 2, Quota: 1, Hold: 3, Concurrency: 2}
	q := fmt.Sprintf("%q", b.queue)
	var got map[string]float64
	waitFor(t, 20*time.Second, fmt.Sprintf("the gauge to show %+v", want), func() bool {
		got = series(t, b.reg)
		for _, c := range asynqrequeue.Causes {
			if got[`quotaq_waiting_tasks{cause="`+string(c)+`",queue=`+q+`}`] != float64(want.Of(c)) {
				return false
			}
		}
		return true
	})
	all, err := asynqrequeue.New(b.rdb).WaitingByQueue(ctx, []string{b.queue})
	if err != nil || all[b.queue].ByCause != want {
		t.Errorf("WaitingByQueue: %+v, %v; want by cause %+v", all[b.queue], err, want)
	}

	standing := func(t *testing.T, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append([]string{"standing", "--queues", b.queue, "--redis-url", "redis://" + redistest.Addr(t), "--prefix", b.prefix}, args...)
		if code := enqueuecli.Run(ctx, args, strings.NewReader(""), &out, &errOut); code != 0 {
			t.Fatalf("%q: exit %d, %s", args, code, errOut.String())
		}
		return out.String()
	}
	for cause, tenant := range tenants {
		t.Run(string(cause), func(t *testing.T) {
			var s struct {
				Waiting struct {
					ByCause asynqrequeue.ByCause `json:"by_cause"`
				} `json:"waiting"`
			}
			out := standing(t, tenant, "--json")
			if err := json.Unmarshal([]byte(out), &s); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			total := 0
			for _, c := range asynqrequeue.Causes {
				total += s.Waiting.ByCause.Of(c)
			}
			if s.Waiting.ByCause.Of(cause) != want.Of(cause) || total != want.Of(cause) {
				t.Errorf("standing --json: waiting by cause %+v, want %d %s only", s.Waiting.ByCause, want.Of(cause), cause)
			}
		})
	}
	if out := standing(t, tenants[asynqrequeue.CauseUpstream]); !strings.Contains(out,
		"waiting    0 for their turn (the rate), 2 for the upstream's rate, 0 for the quota, 0 for a pause (429 or hold), 0 for a concurrency slot") {
		t.Errorf("standing:\n%s", out)
	}
}
