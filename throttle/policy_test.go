package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

var badPolicies = []throttle.Policy{
	{Rate: 0, Burst: 1},
	{Rate: -5, Burst: 1},
	{Rate: math.NaN(), Burst: 1},
	{Rate: math.Inf(1), Burst: 1},
	{Rate: 2e9, Burst: 1},
	{Rate: 1, Burst: 0},
	{Rate: 1, Burst: -3},
	{Rate: 1, Burst: 1, Quota: -1},
	{Rate: 1, Burst: 1, Quota: 1<<53 + 1}, // past what the scripts count exactly
	{Rate: 1, Burst: 1, Concurrency: 1 << 62},
	{Rate: 1, Burst: 1, Quota: 10, QuotaPeriod: -time.Hour},
	{Rate: 1, Burst: 1, QuotaPeriod: time.Hour},
	{Rate: 1, Burst: 1, Quota: 10, QuotaPeriod: time.Microsecond},
	{Rate: 0.0001, Burst: 1000},   // 115 days to refill
	{Rate: 2.5e8, Burst: 1 << 62}, // interval x burst wraps int64
	{Rate: 1e-10, Burst: 1},       // 1e9/rate wraps int64 to a 1ns interval
	{Rate: 1e-12, Burst: 1},
	{Rate: 5e-324, Burst: 1},                  // 1e9/rate is +Inf
	{Rate: throttle.MinRate * 0.99, Burst: 1}, // a token every 10.1 days
	{Rate: 1.5e9, Burst: 1},                   // 0.67ns a token
	{Rate: 3e9, Burst: 1},                     // interval rounds to 0
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	for _, p := range badPolicies {
		if err := p.Validate(); !errors.Is(err, throttle.ErrInvalidPolicy) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidPolicy", p, err)
		}
	}
	good := []throttle.Policy{
		throttle.PerSecond(1), throttle.PerMinute(600),
		{Rate: 0.5, Burst: 1},
		{Rate: 1e9, Burst: 1},
		{Rate: throttle.MaxRate, Burst: 1000},
		{Rate: throttle.MinRate, Burst: 1},
		{Rate: 10, Burst: 10, Quota: 10000, QuotaPeriod: 24 * time.Hour},
		{Rate: 10, Burst: 10, Quota: 10000},
	}
	for _, p := range good {
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", p, err)
		}
	}
}

func TestPolicyErrorNamesTheField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    throttle.Policy
		want string
	}{
		{throttle.Policy{Rate: -5, Burst: 1}, "rate -5"},
		{throttle.Policy{Rate: math.NaN(), Burst: 1}, "rate NaN"},
		{throttle.Policy{Rate: 1, Burst: 0}, "burst 0"},
		{throttle.Policy{Rate: 1, Burst: 1, Quota: -1}, "quota -1"},
		{throttle.Policy{Rate: 1e-10, Burst: 1}, "rate 1e-10 is below the least, 1.1574074074074074e-06 tokens per second"},
		{throttle.Policy{Rate: 0, Burst: 1}, "below the least, 1.1574074074074074e-06"},
		{throttle.Policy{Rate: 2e9, Burst: 1}, "rate 2e+09 is above the most, 1e+09 tokens per second"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want it to name %q", tt.p, err, tt.want)
		}
	}
}

// An invalid default policy is a configuration error: New reports it, and
// every decision refuses with ErrInvalidPolicy, never ErrUnavailable, even
// when the Limiter fails open.
func TestInvalidDefaultPolicyIsNeverAnOutage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy throttle.Policy
	}{
		{"NaN", throttle.Policy{Rate: math.NaN(), Burst: 10}},
		{"Inf", throttle.Policy{Rate: math.Inf(1), Burst: 10}},
		{"AboveTheMost", throttle.Policy{Rate: 2e9, Burst: 10}},
		{"TooSmallForItsInterval", throttle.Policy{Rate: 1e-12, Burst: 1}},
		{"NoBurst", throttle.Policy{Rate: 10}},
	}
	for _, tt := range tests {
		for _, open := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/FailOpen=%v", tt.name, open), func(t *testing.T) {
				t.Parallel()
				l, _ := setup(t, throttle.WithDefaultPolicy(tt.policy), throttle.WithFailOpen(open))
				if err := l.Err(); !errors.Is(err, throttle.ErrInvalidPolicy) {
					t.Fatalf("Err() = %v, want ErrInvalidPolicy", err)
				}
				ctx := context.Background()
				check := func(what string, allowed bool, err error) {
					t.Helper()
					if !errors.Is(err, throttle.ErrInvalidPolicy) || errors.Is(err, throttle.ErrUnavailable) || allowed {
						t.Errorf("%s: allowed %v, err %v; want refused with ErrInvalidPolicy only", what, allowed, err)
					}
				}
				r, err := l.Allow(ctx, "acme")
				check("Allow", r.Allowed, err)
				res, err := l.ReserveN(ctx, "acme", 1, 0)
				check("ReserveN", res.OK, err)
				r, err = l.AllowMulti(ctx, 1, "acme", "upstream")
				check("AllowMulti", r.Allowed, err)
				r, err = l.Peek(ctx, "acme")
				check("Peek", r.Allowed, err)
			})
		}
	}
}

// A default policy stored in Redis that cannot be enforced (written by hand,
// or by another program) is a configuration error too.
func TestInvalidStoredDefaultPolicyIsNeverAnOutage(t *testing.T) {
	t.Parallel()
	stored := map[string][]any{
		"RateNaN":         {"rate", "NaN", "t", 1, "b", 10, "q", 0, "qp", 0},
		"BurstNotANumber": {"rate", "5", "t", 200000000, "b", "many", "q", 0, "qp", 0},
	}
	for name, fields := range stored {
		for _, open := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/FailOpen=%v", name, open), func(t *testing.T) {
				t.Parallel()
				l, c := setup(t, throttle.WithFailOpen(open))
				ctx := context.Background()
				if err := c.HSet(ctx, l.Prefix()+":default-policy", fields...).Err(); err != nil {
					t.Fatal(err)
				}
				r, err := l.Allow(ctx, "acme")
				if !errors.Is(err, throttle.ErrInvalidPolicy) || errors.Is(err, throttle.ErrUnavailable) || r.Allowed {
					t.Errorf("Allow: allowed %v, err %v; want refused with ErrInvalidPolicy only", r.Allowed, err)
				}
				if err := l.Backoff(ctx, "acme", time.Second); !errors.Is(err, throttle.ErrInvalidPolicy) || errors.Is(err, throttle.ErrUnavailable) {
					t.Errorf("Backoff: %v; want ErrInvalidPolicy only", err)
				}
			})
		}
	}
}

func TestInvalidLearningIsReportedByNew(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, throttle.WithLearning(throttle.Learning{Factor: 1.5, Floor: 0.1, Recovery: time.Minute}), throttle.WithFailOpen(true))
	if err := l.Err(); !errors.Is(err, throttle.ErrInvalidPolicy) {
		t.Fatalf("Err() = %v, want ErrInvalidPolicy", err)
	}
	if r, err := l.Allow(context.Background(), "acme"); r.Allowed || !errors.Is(err, throttle.ErrInvalidPolicy) {
		t.Errorf("Allow = %v, %v; want refused with ErrInvalidPolicy", r, err)
	}
}

func TestValidDefaultPolicyHasNoError(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, throttle.WithDefaultPolicy(throttle.Policy{Rate: throttle.MinRate, Burst: 1}))
	if err := l.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}

// UpdatePolicy changes a policy in one step with reading it: callers that
// each add to the rate at once lose none of the others' changes (a read
// then a write would), and a change that errs or is invalid writes nothing.
// On redis-server and on miniredis (the embedded Redis).
func TestUpdatePolicyLosesNoConcurrentChange(t *testing.T) {
	t.Parallel()
	real, _ := setup(t)
	mini, _ := setupClock(t, time.Time{})
	for name, l := range map[string]*throttle.Limiter{"redis-server": real, "miniredis": mini} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			updatePolicyLosesNothing(t, l)
		})
	}
}

func updatePolicyLosesNothing(t *testing.T, l *throttle.Limiter) {
	ctx := context.Background()
	if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: 100, Burst: 10}); err != nil {
		t.Fatal(err)
	}
	const callers = 16
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := l.UpdatePolicy(ctx, "acme", func(p throttle.Policy) (throttle.Policy, error) {
				p.Rate++
				return p, nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p, explicit, err := l.GetPolicy(ctx, "acme")
	if err != nil || !explicit || p.Rate != 100+callers || p.Burst != 10 {
		t.Fatalf("after %d concurrent +1 changes: %+v (own %v), %v; want rate %d, burst 10", callers, p, explicit, err, 100+callers)
	}

	refuse := errors.New("refused by the caller")
	for name, change := range map[string]func(throttle.Policy) (throttle.Policy, error){
		"an error":         func(p throttle.Policy) (throttle.Policy, error) { p.Rate = 1; return p, refuse },
		"an invalid burst": func(p throttle.Policy) (throttle.Policy, error) { p.Burst = -1; return p, nil },
	} {
		if _, _, err := l.UpdatePolicy(ctx, "acme", change); err == nil {
			t.Errorf("%s: no error", name)
		}
		if got, _, _ := l.GetPolicy(ctx, "acme"); got != p {
			t.Errorf("%s: the policy became %+v, want %+v unchanged", name, got, p)
		}
	}
	// a tenant on the default policy gets its own, from the default
	before, after, err := l.UpdatePolicy(ctx, "newco", func(p throttle.Policy) (throttle.Policy, error) {
		p.Burst = 3
		return p, nil
	})
	def, _ := l.DefaultPolicy(ctx)
	if err != nil || before != def || after.Burst != 3 || after.Rate != def.Rate {
		t.Errorf("UpdatePolicy on the default = %+v -> %+v, %v; want the default %+v with burst 3", before, after, err, def)
	}
}
