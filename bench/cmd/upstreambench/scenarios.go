package main

import (
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// scenario is one situation the upstream is watched through.
type scenario struct {
	name string
	what string
	run  func(s *stage) ([]result, error)
}

var scenarios = []scenario{
	{"steady", "a backlog drained by one worker, nothing in the way", steady},
	{"worker-restart", "the worker gets SIGTERM mid-backlog and is started again later", workerRestart},
	{"redis-restart", "redis-server is killed mid-backlog and restarted from its AOF later", redisRestart},
	{"paused-queue", "the asynq queue is paused 5 s mid-backlog (Inspector.PauseQueue), then unpaused", pausedQueue},
	{"shaped", "the backlog is enqueued with quotaq-enqueue --shape", shaped},
	{"tight-upstream", "the upstream allows half the policy's rate", tightUpstream},
	{"quota-reset", "half the backlog is parked on a used-up quota, then `quotaq-enqueue quota reset T --now`", quotaReset},
	{"two-workers", "two worker processes drain one backlog", twoWorkers},
	{"no-concurrency-limit", "two workers of concurrency 20 drain a backlog to an upstream that answers after 200 ms; the rate alone is limited", noConcurrencyLimit},
	{"concurrency-limit", "the same with the tenant's concurrency limited to 5 (quotaq-enqueue policy set --concurrency 5)", concurrencyLimit},
}

// size picks the full or the -short figure.
func (s *stage) size(full, short int) int {
	if s.cfg.short {
		return short
	}
	return full
}

// pause picks the full or the -short duration.
func (s *stage) pause(full, short time.Duration) time.Duration {
	if s.cfg.short {
		return short
	}
	return full
}

// plainBacklog is the plainest scenario: workers start (with workerFlags),
// t's backlog is enqueued, and it drains with nothing in the way.
func (s *stage) plainBacklog(scenario string, t tenant, workers int, workerFlags ...string) ([]result, error) {
	if err := s.workersUp(workers, workerFlags...); err != nil {
		return nil, err
	}
	t0, err := s.backlog(t)
	if err != nil {
		return nil, err
	}
	return []result{s.drainAndMeasure(scenario, t, t0)}, nil
}

func steady(s *stage) ([]result, error) {
	return s.plainBacklog("steady", tenant{id: "acme", rate: 20, burst: 5, upRate: 20, upBurst: 5, tasks: s.size(300, 60)}, 1)
}

func workerRestart(s *stage) ([]result, error) {
	t := tenant{id: "acme", rate: 2, burst: 2, upRate: 2, upBurst: 2, tasks: s.size(60, 20)}
	after, down := s.pause(3*time.Second, 2*time.Second), s.pause(15*time.Second, 5*time.Second)
	w, err := s.worker()
	if err != nil {
		return nil, err
	}
	t0, err := s.backlog(t)
	if err != nil {
		return nil, err
	}
	time.Sleep(after - time.Since(t0))
	w.term(30 * time.Second)
	time.Sleep(down)
	if _, err := s.worker(); err != nil {
		return nil, err
	}
	note := fmt.Sprintf("SIGTERM %s after the enqueue began, started again %s later", seconds(after), seconds(down))
	return []result{s.drainAndMeasure("worker-restart", t, t0, note)}, nil
}

func redisRestart(s *stage) ([]result, error) {
	t := tenant{id: "acme", rate: 2, burst: 2, upRate: 2, upBurst: 2, tasks: s.size(60, 20)}
	after, down := s.pause(3*time.Second, 2*time.Second), s.pause(18*time.Second, 5*time.Second)
	if err := s.workersUp(1); err != nil {
		return nil, err
	}
	t0, err := s.backlog(t)
	if err != nil {
		return nil, err
	}
	time.Sleep(after - time.Since(t0))
	s.srv.Kill()
	time.Sleep(down)
	if err := s.srv.Restart(); err != nil {
		return nil, err
	}
	note := fmt.Sprintf("redis-server killed %s after the enqueue began (appendfsync always), restarted from its AOF %s later", seconds(after), seconds(down))
	return []result{s.drainAndMeasure("redis-restart", t, t0, note)}, nil
}

func pausedQueue(s *stage) ([]result, error) {
	t := tenant{id: "acme", rate: 5, burst: 2, upRate: 5, upBurst: 2, tasks: s.size(60, 30)}
	after, paused := 2*time.Second, 5*time.Second
	if err := s.workersUp(1); err != nil {
		return nil, err
	}
	t0, err := s.backlog(t)
	if err != nil {
		return nil, err
	}
	insp := asynq.NewInspectorFromRedisClient(s.rdb)
	time.Sleep(after - time.Since(t0))
	if err := insp.PauseQueue("default"); err != nil {
		return nil, fmt.Errorf("pause queue: %w", err)
	}
	time.Sleep(paused)
	if err := insp.UnpauseQueue("default"); err != nil {
		return nil, fmt.Errorf("unpause queue: %w", err)
	}
	note := fmt.Sprintf("queue paused %s after the enqueue began, for %s", seconds(after), seconds(paused))
	return []result{s.drainAndMeasure("paused-queue", t, t0, note)}, nil
}

func shaped(s *stage) ([]result, error) {
	return s.plainBacklog("shaped", tenant{id: "acme", rate: 20, burst: 5, upRate: 20, upBurst: 5, tasks: s.size(300, 60), enqueueFlags: []string{"--shape"}}, 1)
}

func tightUpstream(s *stage) ([]result, error) {
	t := tenant{id: "acme", rate: 20, burst: 5, upRate: 10, upBurst: 5, tasks: s.cfg.tightTasks}
	if t.tasks == 0 {
		t.tasks = s.size(600, 60)
	}
	return s.plainBacklog("tight-upstream", t, 1)
}

// quotaReset: the tenant's quota covers half its backlog; the other half is
// parked until the quota period ends (an hour). Once the first half ran and
// the rest is parked, the quota is reset from the CLI; the drain is counted
// from the reset.
func quotaReset(s *stage) ([]result, error) {
	n := s.size(60, 20)
	t := tenant{id: "acme", rate: 10, burst: 5, quota: int64(n / 2), period: time.Hour, upRate: 10, upBurst: 5, tasks: n,
		drainFromNote: "the quota reset"}
	if err := s.workersUp(1); err != nil {
		return nil, err
	}
	if _, err := s.backlog(t); err != nil {
		return nil, err
	}
	if err := s.waitFor(t, n/2); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // the rest is put back, parked
	before := s.up.done(t.id)
	reset := time.Now()
	if err := enqueueCLI(s.bins.enqueue, s.env, nil, "quota", "reset", t.id, "--now"); err != nil {
		return nil, err
	}
	drained := s.waitDone(t, s.pause(60*time.Second, 15*time.Second))
	note := fmt.Sprintf("%d of %d ran before the reset", before, n)
	return []result{s.measure("quota-reset", t, reset, drained, note)}, nil
}

func twoWorkers(s *stage) ([]result, error) {
	return s.plainBacklog("two-workers", tenant{id: "acme", rate: 20, burst: 5, upRate: 20, upBurst: 5, tasks: s.size(300, 60)}, 2)
}

// slowUpstream is the tenant of the concurrency scenarios: a rate high
// enough never to bind, an upstream that answers every call after 200 ms,
// and concurrency calls in flight at most (0: no limit).
func (s *stage) slowUpstream(concurrency int) tenant {
	t := tenant{id: "acme", rate: 1000, burst: 100, concurrency: concurrency, upLatency: 200 * time.Millisecond, tasks: s.cfg.slowTasks}
	if t.tasks == 0 {
		t.tasks = s.size(150, 30)
	}
	return t
}

func noConcurrencyLimit(s *stage) ([]result, error) {
	return s.plainBacklog("no-concurrency-limit", s.slowUpstream(0), 2, "--concurrency", "20")
}

func concurrencyLimit(s *stage) ([]result, error) {
	return s.plainBacklog("concurrency-limit", s.slowUpstream(5), 2, "--concurrency", "20")
}
