// Package asynqrequeue moves a task that asynq is running back to asynq's
// scheduled set, keeping the very same task, and brings it back to its queue
// at a precise time. It works on asynq's own Redis keys, so it is pinned to
// asynq's key layout (v0.26: "asynq:{<queue>}:..."); layout_test.go fails if
// that layout changes.
//
// Why: a worker that refuses to run a task now (its tenant is throttled)
// must give the task back without it counting as a failure. asynq v0.26 has
// no such outcome: its processor archives a task whose retry count has
// reached its MaxRetry before it asks IsFailure (processor.go,
// handleFailedMessage), so a MaxRetry(0) task, or one on its last attempt,
// would be lost. Instead the worker moves the task itself and then returns
// asynq.RevokeTask, which makes the processor leave the task alone:
//
//   - Requeue, in one Lua script: checks that the task is still active and
//     leased (so it is ours), then LREM from the active list, ZREM from the
//     lease set, state "scheduled", ZADD to the scheduled set at the due
//     time rounded up to whole seconds (asynq's forwarder and Inspector read
//     whole seconds). The task hash, its message bytes (id, type, payload,
//     headers, queue, timeout, deadline, retention, unique key, retry count)
//     and the unique lock are not touched.
//   - The processor, handed RevokeTask, calls Done, whose script fails with
//     "NOT FOUND" on its first check (the id is no longer in the active list)
//     before it writes anything: nothing is deleted, nothing counted as
//     processed or failed. It logs two warnings, and queues a sync retry of
//     Done whose context was already cancelled when markAsDone returned, so
//     go-redis never sends it (pinned by TestCancelledContextSendsNothing).
//   - The heartbeater only extends leases with ZADD XX, so it cannot put the
//     id back into the lease set; the recoverer only looks at the lease set.
//   - The task hash records the number of re-queues and the total wait in
//     fields asynq ignores ("quotaq_throttles", "quotaq_waited_ms"), and the
//     exact due time ("quotaq_due"), and why it waits ("quotaq_cause", a
//     Cause, which Waiting and WaitingByQueue count by).
//
// A task put back to wait for nothing booked (a quota used up, a pause, an
// outage) is also recorded in quotaq's own zset of its tenant, under its
// queue's hash tag ("asynq:{<queue>}:quotaq:parked:<tenant>"), so that
// Release can bring it back early when what it waits for ends (a quota
// reset, a higher policy).
//
// A Waker then moves the task from the scheduled set to the head of the
// pending list at its exact due time (asynq's forwarder only looks every
// DelayedTaskCheckInterval and compares whole seconds). If the process that
// re-queued the task stops, asynq's own forwarder still brings it back, up
// to one second plus one DelayedTaskCheckInterval later.
package asynqrequeue
