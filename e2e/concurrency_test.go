package e2e

import (
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// TestConcurrencySlotOfAKilledWorker: a tenant with a concurrency limit of
// 1. Worker A runs one of its tasks, whose call hangs, and is SIGKILLed
// with the slot held. The slot frees when its --slot-ttl runs out, and
// worker B runs the tenant's other tasks one at a time, then, once asynq
// hands it back, the killed one. The upstream never sees two of the
// tenant's calls at once, and every task is processed once.
func TestConcurrencySlotOfAKilledWorker(t *testing.T) {
	t.Parallel()
	s := newStage(t)
	s.policy(t, "acme", throttle.Policy{Rate: 1000, Burst: 1000, Concurrency: 1})
	s.up.delay = 100 * time.Millisecond // calls that would overlap without the limit
	flags := append(append([]string(nil), fast...), "--concurrency", "4", "--slot-ttl", "2s")
	tasks := tasksFor("acme", "", 0, 6)
	const hung = 0
	s.up.setHang(hung, true)
	a := startWorker(t, "A", s.env, flags...)
	s.enqueue(t, tasks[:1])
	eventually(t, 30*time.Second, "the hung call running", func() bool { return s.up.running(hung) == 1 })
	s.enqueue(t, tasks[1:])
	a.kill()
	eventually(t, 10*time.Second, "the killed worker's call gone", func() bool { return s.up.running(hung) == 0 })

	s.up.setHang(hung, false)
	if !*long {
		// as if asynq's lease of the killed task had run out (~60 s): the
		// next worker's recoverer hands it back
		s.ageLeases(t, "default")
	}
	start := time.Now()
	startWorker(t, "B", s.env, flags...)
	others := seqsOf(tasks)[1:]
	eventually(t, 60*time.Second, "the other tasks done after the dead slot ran out", func() bool {
		return s.up.done(others) == len(others)
	})
	t.Logf("the other %d tasks done %s after B started (the dead worker's slot lasted up to 2s)", len(others), time.Since(start).Round(10*time.Millisecond))
	if !*long {
		eventually(t, 30*time.Second, "the killed task in the retry set", func() bool {
			q, err := s.insp.GetQueueInfo("default")
			return err == nil && q.Retry == 1
		})
		s.dueRetries(t, "default")
	}
	drain(t, s.up, s.insp, "default", seqsOf(tasks), 4*time.Minute)
	f := s.up.figures(seqsOf(tasks))
	report(t, f, "concurrency 1, a worker killed holding the slot")
	if f.Lost != 0 || f.Duplicated != 0 || f.Processed != len(tasks) {
		t.Fatalf("%s; want all %d processed once", f, len(tasks))
	}
	if most := s.up.mostAtOnce("acme"); most != 1 {
		t.Fatalf("the upstream saw %d of acme's calls at once, want 1 (its concurrency limit)", most)
	}
}
