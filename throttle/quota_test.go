package throttle_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

func TestQuotaAndBucketDecideTogether(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Date(2026, 11, 22, 23, 59, 0, 0, time.UTC) // a minute before the daily period ends
	l, m := setupClock(t, start)
	if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: 100, Burst: 5, Quota: 7, QuotaPeriod: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	r := mustAllowN(t, l, "acme", 5)
	if !r.Allowed || r.QuotaRemaining != 2 || r.QuotaResetAfter != time.Minute {
		t.Fatalf("first 5: %+v", r)
	}
	// bucket empty, quota has 2: the bucket refuses, the quota is not consumed
	r = mustAllowN(t, l, "acme", 2)
	if r.Allowed || r.Reason != throttle.ReasonRate || r.RetryAfter != 20*time.Millisecond {
		t.Fatalf("empty bucket: %+v", r)
	}
	m.SetTime(start.Add(time.Second)) // bucket full again
	// the quota refuses 3: the bucket is not consumed, RetryAfter = until midnight
	r = mustAllowN(t, l, "acme", 3)
	if r.Allowed || r.Reason != throttle.ReasonQuota || r.RetryAfter != 59*time.Second || r.QuotaRemaining != 2 {
		t.Fatalf("quota refusal: %+v", r)
	}
	if r = mustAllowN(t, l, "acme", 2); !r.Allowed || r.Remaining != 3 || r.QuotaRemaining != 0 {
		t.Fatalf("last 2 of the quota: %+v", r)
	}
	// a new UTC day: a new quota period by itself
	m.SetTime(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	if r = mustAllowN(t, l, "acme", 5); !r.Allowed || r.QuotaRemaining != 2 {
		t.Fatalf("after midnight: %+v", r)
	}
}

func TestQuotaWithoutPeriodWaitsForReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithQuotaRetry(30*time.Second))
	if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: 100, Burst: 10, Quota: 3}); err != nil {
		t.Fatal(err)
	}
	mustAllowN(t, l, "acme", 3)
	m.SetTime(t0.Add(48 * time.Hour))
	r := mustAllowN(t, l, "acme", 1)
	if r.Allowed || r.Reason != throttle.ReasonQuota || r.RetryAfter != 30*time.Second {
		t.Fatalf("quota without a period, unknown reset: %+v", r)
	}
	// a reset recorded for all tenants...
	if err := l.SetDefaultQuotaReset(ctx, t0.Add(50*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if r = mustAllowN(t, l, "acme", 1); r.RetryAfter != 2*time.Hour {
		t.Fatalf("with a default reset two hours ahead: %+v", r)
	}
	// ...gives way to one recorded for the tenant
	if err := l.SetQuotaReset(ctx, "acme", t0.Add(49*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if r = mustAllowN(t, l, "acme", 1); r.RetryAfter != time.Hour || r.QuotaResetAfter != time.Hour {
		t.Fatalf("with a recorded reset an hour ahead: %+v", r)
	}
	if err := l.ResetQuota(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if r = mustAllowN(t, l, "acme", 3); !r.Allowed || r.QuotaRemaining != 0 {
		t.Fatalf("after ResetQuota: %+v", r)
	}
}

func TestResetAllQuotasIsBatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 100, Burst: 10, Quota: 1}))
	const tenants = 2500 // more than two batches
	pipe := c.Pipeline()
	for i := 0; i < tenants; i++ {
		// what a decision leaves behind: a used-up quota
		pipe.HSet(ctx, fmt.Sprintf("%s:{t%d}:quota", prefix, i), "used", 1, "win", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if r := mustAllowN(t, l, "t7", 1); r.Allowed || r.Reason != throttle.ReasonQuota {
		t.Fatalf("t7 before the reset: %+v", r)
	}
	n, err := l.ResetAllQuotas(ctx)
	if err != nil || n != tenants {
		t.Fatalf("ResetAllQuotas = %d, %v; want %d", n, err, tenants)
	}
	for _, id := range []string{"t0", "t7", "t2499"} {
		if r := mustAllowN(t, l, id, 1); !r.Allowed {
			t.Fatalf("%s after ResetAllQuotas: %+v", id, r)
		}
	}
}

func TestIdleTenantLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 20}))
	r := mustAllowN(t, l, "idle", 5)
	ks := keysWith(t, c, prefix)
	if len(ks) != 1 {
		t.Fatalf("keys after one decision: %v", ks)
	}
	ttl, err := c.PTTL(ctx, ks[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	// the key lives until the bucket would be full again, and after a
	// tenant's first admission stateLinger (10 s, tokenbucket.lua's
	// LINGER), so that a tenant far under its limit is decided on its
	// cached state (TestStateLingers has later admissions)
	const stateLinger = 10 * time.Second
	if r.ResetAfter != 500*time.Millisecond || ttl <= stateLinger-time.Second || ttl > stateLinger {
		t.Fatalf("TTL %s, ResetAfter %s; want ResetAfter 500ms, TTL about %s", ttl, r.ResetAfter, stateLinger)
	}
	// and miniredis, moved past that time, has nothing left
	lm, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 20}))
	mustAllowN(t, lm, "idle", 5)
	m.FastForward(stateLinger - time.Millisecond)
	if ks := m.Keys(); len(ks) != 1 {
		t.Fatalf("keys before the linger ended: %v", ks)
	}
	m.FastForward(time.Millisecond)
	if ks := m.Keys(); len(ks) != 0 {
		t.Fatalf("keys left after the bucket refilled and the linger ended: %v", ks)
	}
	// a bucket that takes longer than the linger to refill lives until full
	ls, ms := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 20}))
	if r := mustAllowN(t, ls, "slow", 20); r.ResetAfter != 20*time.Second {
		t.Fatalf("ResetAfter %s after 20 tokens at 1/s, want 20s", r.ResetAfter)
	}
	ms.FastForward(20*time.Second - time.Millisecond)
	if ks := ms.Keys(); len(ks) != 1 {
		t.Fatalf("keys before the bucket refilled: %v", ks)
	}
	ms.FastForward(time.Millisecond)
	if ks := ms.Keys(); len(ks) != 0 {
		t.Fatalf("keys left after the bucket refilled: %v", ks)
	}
}

func TestOverdueQuotaResetAsksAgainSoon(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0)
	if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: 100, Burst: 10, Quota: 1}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetQuotaReset(ctx, "acme", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	mustAllowN(t, l, "acme", 1)
	if r := mustAllowN(t, l, "acme", 1); r.RetryAfter != time.Second {
		t.Fatalf("before the recorded reset: %+v", r)
	}
	// the reset is due but its task has not run yet: ask again in a second,
	// not after the one-minute fallback
	m.SetTime(t0.Add(time.Second + 10*time.Millisecond))
	if r := mustAllowN(t, l, "acme", 1); r.Allowed || r.RetryAfter != time.Second {
		t.Fatalf("reset overdue by 10ms: %+v", r)
	}
	// overdue by hours: a stale record, the fallback applies
	m.SetTime(t0.Add(3 * time.Hour))
	if r := mustAllowN(t, l, "acme", 1); r.RetryAfter != time.Minute {
		t.Fatalf("reset overdue by hours: %+v", r)
	}
}
