// Package worker throttles asynq tasks per tenant: a middleware asks a
// throttle.Limiter before each task runs and puts a task that must wait back
// in its queue, to come back when its tokens are due.
//
//	l := throttle.New(rdb, throttle.WithLeases(100*time.Millisecond, 0)) // as quotaq-worker
//	t, err := worker.NewChecked(l, rdb, worker.WithMetrics(m))
//	if err != nil { ... } // the program links an asynq version the Throttler is not tested with
//	defer t.Close()
//	srv := asynq.NewServerFromRedisClient(rdb, t.ServerConfig(asynq.Config{Concurrency: 20}))
//	mux := asynq.NewServeMux()
//	mux.Use(t.Middleware)
//	mux.Handle(worker.TypeHTTPCall, worker.NewHTTPCallHandler(nil))
//
// NewChecked refuses (ErrUnsupportedAsynq) when the program links an asynq
// other than SupportedAsynq: putting a task back relies on asynq internals
// (its key layout, how it retries Done, the text of its log lines) that
// another version may change. New is the same without the check, for a
// program that has tested its asynq version itself; it keeps New's old
// signature.
//
// # Tenants
//
// A task's tenant is its TenantHeader header, else the "tenant" field of its
// JSON object payload, else what WithTenantFunc finds. A task with none is
// limited under one shared id (WithUntenanted, default DefaultUntenanted) or,
// if so configured, archived. A tenant id that is named but invalid archives
// the task at once (asynq.SkipRetry) with an error that says why. Task types
// starting with "quotaq:" (the scheduler's quota tasks) are exempt.
//
// A task may also be checked against shared limits, such as the upstream API
// all tenants call (WithUpstream; by default its UpstreamHeader header), in
// the same atomic decision: it runs only if every level admits it, and a
// refusal consumes nothing anywhere. An upstream named "acme" is limited
// under throttle.Upstream("acme"), a key space apart from the tenants' (a
// task cannot spend tenant acme's tokens by naming it as its upstream), and
// only the upstreams WithAllowedUpstreams lists are accepted: a task naming
// another is archived (reason "unknown_upstream"), so a payload cannot
// drain, or create, a shared limit of its choosing.
//
// # Cost
//
// A task takes one token, and one quota unit, unless its CostHeader header
// says more ("cost": "5" takes 5 of each, in the same decision); WithCost
// replaces that rule with a function of your own. A task that costs more
// than its tenant's burst could never run and is archived (reason
// "cost_above_burst"); one whose header is not a whole number of 1 or more
// is archived at once (reason "invalid_cost"). The Shaper books the same
// cost, and quotaq-enqueue --cost refuses such tasks before enqueueing.
//
// # How a throttled task goes back
//
// asynq v0.26 has no "not now, and not a failure" outcome: its processor
// archives a task whose retry count has reached MaxRetry before it asks
// IsFailure, so the usual recipe (an error that IsFailure says is not a
// failure, plus RetryDelayFunc) archives throttled MaxRetry(0) tasks and
// tasks on their last attempt. The Throttler instead moves the running task
// itself, in one Lua script on asynq's keys, from the active list to the
// scheduled set, unchanged (same id, type, payload, headers, queue, timeout,
// deadline, retention, unique lock and retry count), and returns
// asynq.RevokeTask (matched by ErrRequeued) so the processor leaves it there.
// asynq then counts it neither as failed nor as processed. The Throttler
// brings it back to the head of its queue at its due time; if the worker
// stops first, asynq's forwarder brings it back, at most a second plus
// DelayedTaskCheckInterval late.
//
// The due time comes from the limiter's reservation: the tokens are booked
// (throttle.Request.Ticket = queue:task id), so the k-th throttled task of a
// tenant comes back at about its own slot, k/rate later (plus a little
// jitter, and at least WithMinDelay), and runs then without being throttled
// again. Stats.Rethrottled and quotaq_worker_rethrottled_total count the
// dequeues that were throttled again anyway (a quota used up, a tenant held
// after the booking): the waste this design keeps near zero.
//
// # Upstream says stop
//
// A handler whose API answered 429 or 503 with Retry-After returns
// RetryAfter(d, err). The task goes back (not a failure) and the tenant is
// held for d, so its other tasks wait too; its next run is booked after the
// pause. d is cut to WithMaxRetryAfter (default one hour), logged and
// counted, so an upstream's "Retry-After: 31536000" cannot strand a task.
//
// # Giving up
//
// WithMaxWait caps how long in all a task may wait because of throttling;
// a task that would pass it is archived with an error saying so. Unset, a
// task waits as long as it takes.
//
// # DelayedTaskCheckInterval and TaskCheckInterval
//
// asynq's forwarder moves due delayed tasks every DelayedTaskCheckInterval
// (5 s by default) and compares whole seconds; re-queued tasks do not depend
// on it (the Throttler wakes them itself), but asynq's retries, ProcessIn
// tasks and the backstop do. ServerConfig sets it to 1 s unless given:
// shorter means those tasks run closer to their time, at the cost of one
// Redis script per queue per interval per worker. An idle processor sleeps
// about TaskCheckInterval before it looks again; ServerConfig sets 25 ms
// (asynq's default is 1 s) so a task brought back to an idle queue starts at
// its slot rather than in a clump, at the cost of more polls of an empty
// queue.
//
// # Shadow mode
//
// WithShadow lets a team try quotaq on live traffic before it enforces
// anything: the middleware decides on every task, counts and logs what it
// would have throttled or archived, and runs the task.
//
// The decision is the limiter's Allow with the task's ids, cost and slot
// (throttle.Limiter.AllowRequest), not enforcing mode's Reserve. Reserve
// books the tokens of a task that must wait for its slot; a task run at
// once in shadow would never redeem them, so each would-be throttle would
// push the tenant's bucket further into the future, wrongly count the tasks
// after it and, once shadow is turned off, hold real tasks behind bookings
// nobody uses. Allow consumes a task's tokens and quota only when it admits
// the task, books nothing, and refuses for the reasons Reserve would make a
// task wait: rate, quota, pause, concurrency. Over a backlog it admits what
// enforcing mode would have run at once (the burst, then the rate) and
// counts the rest.
//
// Shadow mode never puts a task back, holds one in the process, or archives
// one (a bad tenant or cost, a cost above the burst: counted as would-be
// archives, reason as archived_total's; the max wait is not predicted, as a
// task's wait depends on bookings shadow mode does not make). It never
// holds a tenant nor learns a slower rate when an upstream answers 429/503
// (RetryAfter) or says its budget is spent (UpstreamSpent): those are
// counted as holds skipped, and a RetryAfter also as a would-be throttle
// (reason "upstream"); the handler's error goes to asynq, which retries the
// task as it would without quotaq. As no tenant is held, the tasks that
// would have waited behind a hold are not counted: shadow counts are low
// while an upstream refuses. A task admitted takes a concurrency slot and
// frees it when it returns, as in enforcing mode, so slots count what
// enforcing would have let run; a task refused for want of a slot runs
// without one.
//
// Tasks booked ahead (by a Shaper, or put back by a worker that enforces)
// are charged again by a worker in shadow: switch the workers of a
// deployment from shadow to enforcing together, and do not shape while in
// shadow.
//
// What it would have done is counted in Stats (ShadowThrottled,
// ShadowArchived, ShadowHoldsSkipped) and the quotaq_worker_shadow_*
// metrics, logged at Debug for each task and summed up at Info once a
// minute (when there was something), and recorded in the Redis given to
// New, under the limiter's prefix: that the worker runs in shadow,
// refreshed every 10 s, removed by Close or 30 s after a worker dies, and
// the would-be throttles by tenant (up to 10,000 tenants by name, the
// others added up), kept a day after the last worker in shadow stopped.
// quotaq-enqueue standing and status show them.
//
// # Shaping at enqueue
//
// The middleware sees a task only when asynq hands it over, so a backlog far
// beyond a tenant's rate is dequeued twice per task and other tenants' tasks
// in the same queue wait behind it. A Shaper books each task's tokens when it
// is enqueued (with the task's ticket, TaskTicket) and schedules it at its
// slot; the middleware redeems the booking when the task arrives. One dequeue
// per task, and the queue only holds tasks that may run.
package worker
