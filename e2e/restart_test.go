package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// mix is a throttled workload whose limits can be checked exactly whatever
// the timing: quota tenants (admitted exactly their quota, until a reset),
// a slow tenant (admitted exactly its burst: it refills one token an hour),
// and flowing tenants that finish on their own at their rate.
type mix struct {
	quota, slow, flow []string
	quotaN, slowBurst int64
	flowRate          float64
	flowBurst         int64
	tasks             []task
	again             int // tasks asynq will run again (see checkEmpty)
}

func newMix(s *stage, t *testing.T, perTenant int) *mix {
	m := &mix{quota: []string{"quota-a", "quota-{b}"}, slow: []string{"slow:c"}, flow: []string{"flow-1", "flow-2", "flow-3"},
		quotaN: int64(perTenant / 2), slowBurst: int64(perTenant / 3), flowRate: 20, flowBurst: 5}
	seq := 0
	for _, id := range m.quota {
		s.policy(t, id, throttle.Policy{Rate: 1000, Burst: 1000, Quota: m.quotaN})
	}
	for _, id := range m.slow {
		s.policy(t, id, throttle.Policy{Rate: 1.0 / 3600, Burst: m.slowBurst})
	}
	for _, id := range m.flow {
		s.policy(t, id, throttle.Policy{Rate: m.flowRate, Burst: m.flowBurst})
	}
	for _, id := range append(append(append([]string(nil), m.quota...), m.slow...), m.flow...) {
		m.tasks = append(m.tasks, tasksFor(id, "", seq, perTenant)...)
		seq += perTenant
	}
	return m
}

func (m *mix) flowSeqs() []int {
	var seqs []int
	for _, tk := range m.tasks {
		if strings.HasPrefix(tk.Tenant, "flow-") {
			seqs = append(seqs, tk.Seq)
		}
	}
	return seqs
}

// checkCaps fails the test unless every capped tenant got exactly its cap.
func (m *mix) checkCaps(t *testing.T, s *stage) {
	t.Helper()
	for _, id := range m.quota {
		if got := s.up.doneFor(id); int64(got) != m.quotaN {
			t.Errorf("tenant %q: %d tasks ran, its quota is %d", id, got, m.quotaN)
		}
	}
	for _, id := range m.slow {
		if got := s.up.doneFor(id); int64(got) != m.slowBurst {
			t.Errorf("tenant %q: %d tasks ran, its burst is %d (refill 1/hour)", id, got, m.slowBurst)
		}
	}
}

// release lifts the caps (quota reset through the CLI and the worker's
// scheduler handler, a faster policy and a reset for the slow tenant) and
// brings the tasks that wait for them back now, then waits for everything.
// It returns how many tasks asynq retried meanwhile (see stage.drain).
func (m *mix) release(t *testing.T, s *stage) int {
	t.Helper()
	mustEnqueue(t, s.env, "", append([]string{"quota", "reset"}, m.quota...)...)
	// the worker's reset handler also brings the tasks parked for the quota
	// back at once: more than the first period's quota runs, without the
	// test moving them
	eventually(t, 30*time.Second, "quota reset applied by a worker, its parked tasks run", func() bool {
		return int64(s.up.doneFor(m.quota[0])) > m.quotaN
	})
	for _, id := range m.slow {
		s.policy(t, id, throttle.Policy{Rate: 1000, Burst: 1000})
		if err := s.lim.Reset(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.insp.RunAllScheduledTasks("default"); err != nil {
		t.Fatal(err)
	}
	retried := s.drain(t, "default", seqsOf(m.tasks), 2*time.Minute)
	m.again = checkEmpty(t, s.insp, "default")
	return retried
}

// TestRedisRestartedWithAOF kills redis-server (SIGKILL, appendonly with
// appendfsync always) in the middle of a throttled run and starts it again
// on the same port and files. The workers reconnect by themselves, say
// so in their health check meanwhile, nothing is lost, and the limits still
// hold: the limiter's state came back from the AOF, so no capped tenant got
// a fresh burst or quota.
func TestRedisRestartedWithAOF(t *testing.T) {
	t.Parallel()
	s := newStage(t, "appendonly yes", "appendfsync always")
	m := newMix(s, t, 30)
	w := []*proc{
		startWorker(t, "A", s.env, "--concurrency", "8"),
		startWorker(t, "B", s.env, "--concurrency", "8"),
	}
	s.enqueue(t, m.tasks)
	flow := m.flowSeqs()
	eventually(t, time.Minute, "a third of the flowing tasks done", func() bool { return s.up.done(flow) >= len(flow)/3 })

	s.srv.Kill()
	for _, p := range w {
		eventually(t, 30*time.Second, "worker "+p.name+" reports Redis down", func() bool { return p.healthz() == 503 })
	}
	doneWhileDown := s.up.done(seqsOf(m.tasks))
	if err := s.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, p := range w {
		eventually(t, 30*time.Second, "worker "+p.name+" reconnected", func() bool { return p.healthz() == 200 })
	}
	retried := s.drain(t, "default", flow, 2*time.Minute)
	m.checkCaps(t, s)
	for _, id := range m.flow {
		checkRate(t, s.up, id, m.flowRate, int(m.flowBurst), time.Second)
	}
	retried += m.release(t, s)
	f := s.up.figures(seqsOf(m.tasks))
	f.Duplicated += m.again
	report(t, f, fmt.Sprintf("%d done when Redis was killed; %d retried by asynq; %d of the duplicates still to run", doneWhileDown, retried, m.again))
	if f.Lost != 0 {
		t.Fatalf("after a Redis restart: %s", f)
	}
	if f.Duplicated > 16 {
		t.Errorf("%d tasks ran twice; at most the 16 in flight at the kill may (at-least-once)", f.Duplicated)
	}
	for _, p := range w {
		if strings.Contains(p.logs.String(), "panic") {
			t.Errorf("worker %s log mentions a panic", p.name)
		}
	}
}

// TestRedisUnreachable takes redis-server away for a while in the middle
// of a throttled run, two ways: killed, so connections are refused, and
// stopped (SIGSTOP), so connections stay open and nothing answers, as in a
// partition. The workers do not panic or exit, report it (health check
// fails, a log line naming the problem), and carry on when it is back;
// nothing is lost and the caps hold.
//
// A hung Redis can leave a task dequeued for a worker that had already
// given up waiting for the answer (asynq's dequeue script runs when the
// server resumes): the task stays leased until asynq's recoverer sees the
// lease expired (1-2 minutes) and hands it back as a retry. With max_retry
// 0 such a task is archived (asynq's rule), not processed.
func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	for _, hung := range []bool{false, true} {
		name := "Refused"
		if hung {
			name = "Hung"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newStage(t, "appendonly yes", "appendfsync always")
			m := newMix(s, t, 24)
			w := startWorker(t, "A", s.env, "--concurrency", "8")
			s.enqueue(t, m.tasks)
			flow := m.flowSeqs()
			eventually(t, time.Minute, "a third of the flowing tasks done", func() bool { return s.up.done(flow) >= len(flow)/3 })
			logBefore := len(w.logs.String())
			if hung {
				if err := s.srv.Pause(); err != nil {
					t.Fatal(err)
				}
			} else {
				s.srv.Kill()
			}
			eventually(t, 30*time.Second, "the worker's health check fails", func() bool { return w.healthz() != 200 })
			outage := func() string {
				for _, l := range strings.Split(w.logs.String()[logBefore:], "\n") {
					if strings.Contains(l, "level=") && (strings.Contains(l, "i/o timeout") || strings.Contains(l, "connection refused") || strings.Contains(l, "limiter unavailable")) {
						return l
					}
				}
				return ""
			}
			eventually(t, 30*time.Second, "the worker logs the outage", func() bool { return outage() != "" })
			if hung {
				if err := s.srv.Resume(); err != nil {
					t.Fatal(err)
				}
			} else if err := s.srv.Restart(); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "the worker sees Redis again", func() bool { return w.healthz() == 200 })
			retried := s.drain(t, "default", flow, 3*time.Minute)
			m.checkCaps(t, s)
			retried += m.release(t, s)
			f := s.up.figures(seqsOf(m.tasks))
			f.Duplicated += m.again
			report(t, f, fmt.Sprintf("%d retried by asynq; %d of the duplicates still to run; first log line of the outage: %s", retried, m.again, outage()))
			if f.Lost != 0 || f.Duplicated > 8 {
				t.Fatalf("after Redis was unreachable: %s", f)
			}
			if strings.Contains(w.logs.String(), "panic") {
				t.Error("worker log mentions a panic")
			}
		})
	}
}

// TestLimiterUnavailableFailsAsConfigured takes the limiter's keys away
// from the worker's ACL user while asynq's stay reachable, so every
// decision fails and only the fail-open setting decides: fail closed, no
// task runs and each is put back (not failed, not lost) until the limiter
// is back, then the quota holds exactly; fail open, every task runs, quota
// or not, and the log says why.
func TestLimiterUnavailableFailsAsConfigured(t *testing.T) {
	t.Parallel()
	for _, open := range []bool{false, true} {
		t.Run(fmt.Sprintf("FailOpen=%v", open), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStage(t)
			const n, quota = 12, 4
			s.policy(t, "metered", throttle.Policy{Rate: 1000, Burst: 1000, Quota: quota})
			full := []any{"ACL", "SETUSER", "w", "on", ">w-" + secret, "resetkeys", "~asynq:*", "~quotaq:*", "&*", "+@all"}
			if err := s.rdb.Do(ctx, full...).Err(); err != nil {
				t.Fatal(err)
			}
			env := []string{"REDIS_URL=redis://w:w-" + secret + "@" + s.srv.Addr + "/0"}
			args := []string{"--concurrency", "4"}
			if open {
				args = append(args, "--fail-open")
			}
			w := startWorker(t, "A", env, args...)
			// the limiter's keys are gone for this user
			if err := s.rdb.Do(ctx, "ACL", "SETUSER", "w", "resetkeys", "~asynq:*").Err(); err != nil {
				t.Fatal(err)
			}
			tasks := tasksFor("metered", "", 0, n)
			s.enqueue(t, tasks)
			want := "failing closed, task put back"
			if open {
				want = "failing open, task runs"
			}
			w.waitLog(want, 30*time.Second)
			if open {
				drain(t, s.up, s.insp, "default", seqsOf(tasks), time.Minute)
				if got := s.up.doneFor("metered"); got != n {
					t.Errorf("fail open: %d of %d tasks ran", got, n)
				}
			} else {
				eventually(t, 30*time.Second, "tasks put back again and again", func() bool {
					return w.metric("quotaq_worker_throttled_total") >= 2*n
				})
				if got := s.up.doneFor("metered"); got != 0 {
					t.Fatalf("fail closed: %d tasks ran while the limiter was unavailable", got)
				}
				if q, err := s.insp.GetQueueInfo("default"); err != nil || q.Archived+q.Retry != 0 {
					t.Fatalf("fail closed must put tasks back, not fail them: %+v %v", q, err)
				}
				if err := s.rdb.Do(ctx, full...).Err(); err != nil {
					t.Fatal(err)
				}
				eventually(t, time.Minute, "the quota admitted once the limiter is back", func() bool { return s.up.doneFor("metered") == quota })
				mustEnqueue(t, s.env, "", "quota", "reset", "--now", "metered")
				mustEnqueue(t, s.env, "", "policy", "set", "metered", "--quota", "0")
				if _, err := s.insp.RunAllScheduledTasks("default"); err != nil {
					t.Fatal(err)
				}
				drain(t, s.up, s.insp, "default", seqsOf(tasks), time.Minute)
			}
			var line string
			for _, l := range strings.Split(w.logs.String(), "\n") {
				if strings.Contains(l, want) {
					line = l
					break
				}
			}
			noSecret(t, "worker log", w.logs.String())
			f := s.up.figures(seqsOf(tasks))
			report(t, f, "log: "+line)
			if f.Lost != 0 || f.Duplicated != 0 {
				t.Fatalf("%s", f)
			}
		})
	}
}
