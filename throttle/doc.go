// Package throttle is a distributed, per-tenant rate limiter on Redis.
//
// A Limiter decides, in one Lua run atomically inside Redis (a Redis
// function on Redis 7, a script before), whether a tenant may spend n tokens
// now. Every process that shares the Redis shares the limit, and the clock
// is Redis's own, so workers whose clocks disagree still admit exactly what
// the bucket allows.
//
// Limiter has four kinds of calls. Allow and AllowN answer now or never and
// consume only when they admit. ReserveN books tokens that may only be due
// later and says when: a job queue uses it to put a throttled job back at its
// own slot instead of retrying in a herd. Peek answers without consuming, as
// does a cost of 0 (AllowN(ctx, tenant, 0), as in go-redis/redis_rate).
// Hold pauses a tenant whose upstream said 429.
//
// Each tenant has a Policy (rate, burst and an optional period quota) stored
// in Redis, so a change takes effect on every worker's next decision (with
// leases, at most one lease later on other processes); tenants
// without one get the default policy. The algorithm is the token bucket by
// default; FixedWindow and SlidingWindow (fixed-window counter and
// sliding-window log) are the other two, behind the same calls.
//
// One decision on an active tenant with no pause or booking costs three
// Redis calls (TIME, GET, SET): the tenant's policy is cached in its
// bucket's state, and whatever changes it drops that cache atomically. For a
// tenant with bookings the same decision also paces the calls that start:
// a booking redeemed late takes its turn among them (burst + rate × window
// holds for the starts, whatever made the jobs late), and an upstream's
// refusals (Backoff) teach the rate the tenant runs at (WithLearning).
// Three options go past one round trip per
// decision: WithRefusalCache refuses locally a tenant known to be empty,
// WithBatching lets concurrent decisions share a round trip and a script run,
// and WithLeases lets a process spend a few tokens of a tenant far under its
// limits without asking, never past the policy.
//
// Keys are "<prefix>:{<tenant>}:<kind>": the tenant id, escaped, is a Redis
// Cluster hash tag, so one tenant's keys share one slot and no id can reach
// another tenant's keys. Shared limits, such as an upstream API all tenants
// call, are named by Upstream(name) and kept under "<prefix>:{upstream:<name>}:",
// a key space no tenant id can name. A Limiter is safe for concurrent use.
package throttle
