// Package scheduler resets and adjusts tenants' quotas on a cron schedule,
// through asynq tasks that run on the workers.
//
// A schedule file (LoadFile, format in Parse) lists named entries, each a
// cron spec and an action: reset the period quotas of some tenants or all
// (TypeQuotaReset), or set the rate, burst or quota of some tenants or of
// every tenant (TypeQuotaAdjust). (Adapting a rate to an upstream's 429s is
// the limiter's own job: throttle.Limiter.Backoff; the former "adaptive"
// action is refused with a message saying so.) The file is checked whole at
// load: a bad spec, an unknown action or field, a negative rate or a bad
// tenant id is an error naming the entry, the field and its line.
//
// A Scheduler (New, Start, Stop) enqueues each firing as a task;
// RegisterHandlers installs the handlers that carry the tasks out on a
// throttle.Limiter, whose next decision sees the change. NewResetTask and
// NewAdjustTask build the same tasks for a manual trigger.
//
// # Exactly once across replicas
//
// A firing's task ID is TaskID(entry name, scheduled fire time), e.g.
// "quotaq:schedule:nightly-reset:1767225600". Every replica computes the same
// ID, and asynq refuses a second task with an ID it holds
// (asynq.ErrTaskIDConflict, logged as "already enqueued by another replica").
// The task is kept after it ran (asynq.Retention) for as long as a replica
// may still enqueue that firing, so a replica that comes late does not run
// it a second time. This needs the replicas to share a Redis and a queue
// (WithQueue), and their clocks to agree within MinWindow. "@every d" fires
// at multiples of d since the Unix epoch, so that replicas agree on it too.
// Two replicas with different files share the IDs of same-named entries: the
// first to enqueue a firing wins.
//
// The handlers run at least once, like any asynq task: a reset that a worker
// crash interrupts may be run again.
//
// # Daylight-saving time
//
// An entry with fixed hours fires as in classic cron across daylight-saving
// changes: a firing whose wall time the spring change skips runs once right
// after the gap (02:30 in Europe/Berlin fires at 03:00 CEST that day), and a
// wall time the autumn change repeats fires once, the first time, so a
// quota is neither left unreset for two days nor reset twice. An entry that
// fires every hour follows real time. See ParseSpec.
//
// # Missed firings
//
// A firing is due at its scheduled time. When a Scheduler starts, it
// enqueues, for each entry, the most recent firing that fell due within the
// entry's catch-up window before now (catch_up, default DefaultCatchUp, one
// hour; 0 turns it off), and none older: a reset missed during a deploy runs
// late, once, and a day of downtime does not replay a day of firings. If
// another replica or an earlier run enqueued that firing already, the task
// ID makes this a no-op. The same rule holds while running: a Scheduler that
// wakes late (suspend, clock jump) enqueues only the latest due firing, and
// only if it is at most max(catch_up, MinWindow) old.
//
// A firing that cannot be enqueued (Redis down) is retried with backoff
// until the entry's next firing is due or max(catch_up, MinWindow) after its
// fire time, whichever comes first.
package scheduler
