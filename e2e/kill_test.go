package e2e

import (
	"strings"
	"testing"
	"time"
)

// fast are worker flags for scenarios about processes, not limits: no
// tenant is throttled.
var fast = []string{"--default-rate", "1000", "--default-burst", "1000"}

// TestWorkerKilledMidTask kills a worker with SIGKILL while a task's call is
// in flight. The task's lease runs out and asynq's recoverer, in the next
// worker, hands it back: it is processed again, and nothing else is lost or
// run twice. The short variant ages the lease and the retry delay in Redis
// instead of waiting for them (about 60 s and 15-45 s); QUOTAQ_E2E_LONG
// waits for real.
//
// A task enqueued with max_retry 0 is archived instead (asynq archives a
// task whose lease expired once it has no retries left): not processed
// again, but not silently gone either, it sits in the archive with the
// reason.
func TestWorkerKilledMidTask(t *testing.T) {
	t.Parallel()
	s := newStage(t)
	const n, hung = 20, 0
	tasks := tasksFor("acme", "", 0, n)
	s.up.setHang(hung, true)
	a := startWorker(t, "A", s.env, append(fast, "--concurrency", "4")...)
	s.enqueue(t, tasks)
	others := seqsOf(tasks)[1:]
	eventually(t, 30*time.Second, "the hung call running and the others done", func() bool {
		if s.up.running(hung) != 1 || s.up.done(others) != n-1 {
			return false
		}
		// and asynq told of them (the upstream answers a call a moment
		// before its task is marked done)
		q, err := s.insp.GetQueueInfo("default")
		return err == nil && q.Active == 1
	})
	a.kill()
	eventually(t, 10*time.Second, "the killed worker's call gone", func() bool { return s.up.running(hung) == 0 })
	if q, err := s.insp.GetQueueInfo("default"); err != nil || q.Active != 1 {
		t.Fatalf("after SIGKILL asynq should hold the task as active (leased): %+v, %v", q, err)
	}
	s.up.setHang(hung, false)

	if !*long {
		if got := s.ageLeases(t, "default"); got != 1 {
			t.Fatalf("aged %d leases, want the 1 of the killed task", got)
		}
	}
	start := time.Now()
	b := startWorker(t, "B", s.env, append(fast, "--concurrency", "4")...)
	if !*long {
		eventually(t, 30*time.Second, "the recovered task in the retry set", func() bool {
			q, err := s.insp.GetQueueInfo("default")
			return err == nil && q.Retry == 1
		})
		s.dueRetries(t, "default")
	}
	drain(t, s.up, s.insp, "default", seqsOf(tasks), 4*time.Minute)
	if n := checkEmpty(t, s.insp, "default"); n != 0 {
		t.Fatalf("%d tasks left active or retrying without any Redis outage", n)
	}
	f := s.up.figures(seqsOf(tasks))
	report(t, f, "killed task recovered after "+time.Since(start).Round(time.Second).String())
	if f.Lost != 0 || f.Duplicated != 0 || f.Processed != n {
		t.Fatalf("after SIGKILL: %s; want all %d processed once", f, n)
	}
	if c := s.up.calls(hung); c != 2 {
		t.Errorf("the killed task was called %d times, want 2 (killed, then again)", c)
	}

	t.Run("MaxRetryZeroIsArchived", func(t *testing.T) {
		s.up.setHang(1000, true)
		line := strings.Replace(s.up.ndjson([]task{{Seq: 1000, Tenant: "acme"}}), `"type"`, `"max_retry":0,"type"`, 1)
		mustEnqueue(t, s.env, line, "--file", "-")
		eventually(t, 30*time.Second, "the hung call running", func() bool { return s.up.running(1000) == 1 })
		b.kill()
		if !*long {
			s.ageLeases(t, "default")
		}
		startWorker(t, "C", s.env, fast...)
		eventually(t, 3*time.Minute, "the task archived", func() bool {
			q, err := s.insp.GetQueueInfo("default")
			return err == nil && q.Archived == 1
		})
		arch, err := s.insp.ListArchivedTasks("default")
		if err != nil || len(arch) != 1 || !strings.Contains(arch[0].LastErr, "lease expired") {
			t.Fatalf("archived: %+v, %v; want the task with a lease-expired error", arch, err)
		}
		t.Logf("max_retry 0: archived with %q (asynq's rule; run it again with the inspector)", arch[0].LastErr)
	})
}

// TestWorkerSIGTERM stops a worker with SIGTERM while calls are in flight:
// it lets them finish, exits 0 and says so; a call longer than
// --shutdown-timeout is cut off and its task handed back to the queue, and
// the next worker processes it. Nothing is lost or run twice.
func TestWorkerSIGTERM(t *testing.T) {
	t.Parallel()
	s := newStage(t)
	s.up.delay = 500 * time.Millisecond
	const n, hung = 12, 0
	tasks := tasksFor("acme", "", 0, n)
	s.up.setHang(hung, true)
	a := startWorker(t, "A", s.env, append(fast, "--concurrency", "3", "--shutdown-timeout", "3s")...)
	s.enqueue(t, tasks)
	eventually(t, 30*time.Second, "the hung call and two others in flight", func() bool {
		s.up.mu.Lock()
		defer s.up.mu.Unlock()
		busy := 0
		for seq, c := range s.up.inFlight {
			if seq != hung && c > 0 {
				busy++
			}
		}
		return s.up.inFlight[hung] == 1 && busy >= 1
	})
	before := s.up.done(seqsOf(tasks))
	if code := a.term(30 * time.Second); code != 0 {
		t.Fatalf("worker exited %d after SIGTERM, want 0", code)
	}
	for _, want := range []string{"quotaq-worker: shutting down", "quotaq-worker: stopped"} {
		if !strings.Contains(a.logs.String(), want) {
			t.Errorf("worker log lacks %q", want)
		}
	}
	if strings.Contains(a.logs.String(), "panic") {
		t.Errorf("worker log mentions a panic:\n%s", tail(a.logs.String(), 30))
	}
	afterTerm := s.up.done(seqsOf(tasks))
	if afterTerm <= before {
		t.Errorf("no call in flight finished after SIGTERM (%d done before, %d after)", before, afterTerm)
	}
	if s.up.running(hung) != 0 {
		t.Fatal("the hung call still runs after the worker exited")
	}
	q, err := s.insp.GetQueueInfo("default")
	if err != nil || q.Active != 0 {
		t.Fatalf("after a graceful stop no task may stay active (leased): %+v, %v", q, err)
	}
	s.up.setHang(hung, false)
	startWorker(t, "B", s.env, append(fast, "--concurrency", "3")...)
	drain(t, s.up, s.insp, "default", seqsOf(tasks), 2*time.Minute)
	if n := checkEmpty(t, s.insp, "default"); n != 0 {
		t.Fatalf("%d tasks left active or retrying without any Redis outage", n)
	}
	f := s.up.figures(seqsOf(tasks))
	report(t, f, "")
	if f.Lost != 0 || f.Duplicated != 0 {
		t.Fatalf("after SIGTERM: %s", f)
	}
}
