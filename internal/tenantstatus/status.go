// Package tenantstatus reports where tenants stand: their limiter state
// (tokens now, quota used and when it resets, pause) and their tasks waiting
// in asynq's queues, found by the tenant header the tasks carry.
//
// It only reads: nothing it does consumes tokens or moves tasks.
package tenantstatus

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/asynqrequeue"
	"github.com/quotaq/quotaq/internal/shadowrec"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// TenantHeader is the task header that names a task's tenant, the one the
// worker reads.
const TenantHeader = worker.TenantHeader

// Status is one tenant's standing.
type Status struct {
	Tenant   string
	Policy   throttle.Policy
	Explicit bool // Policy is the tenant's own, not the default

	Tokens      int64         // tokens in the bucket now
	NextTokenIn time.Duration // time until one token is there; 0 if one is
	FullIn      time.Duration // time until the bucket is full
	Paused      bool          // held by Limiter.Hold (its upstream said 429)
	HoldLeft    time.Duration // how long the pause has left
	// LearnedRate is the rate it runs at while it climbs back to its
	// policy's after its upstream's refusals, back in LearnedFullIn; 0:
	// at its policy's rate
	LearnedRate   float64
	LearnedFullIn time.Duration
	Booked        int64 // its tasks' bookings not run yet (counted in the quota used)
	Holds         int64 // times the tenant was held
	InFlight      int64 // its tasks running now, each holding a slot (Policy.Concurrency)
	// Waiting counts its tasks put back by the worker, by what they wait
	// for (counted when Options.Asynq is given and it has scheduled tasks)
	Waiting Waiting

	Quota *Quota // nil when the policy has no quota

	Tasks Tasks

	// Shadow is what workers in shadow mode recorded (counted when
	// Options.Asynq is given); nil when no worker runs in shadow nor did
	// lately.
	Shadow *Shadow
}

// Shadow is what workers in shadow mode (quotaq-worker --shadow) recorded:
// they decide and count, and run every task.
type Shadow struct {
	Workers int // workers in shadow now; 0: none now, the counts are kept a day
	// WouldThrottle counts the tenant's tasks they ran that enforcing
	// would not have let start at once
	WouldThrottle int64
	Since         time.Time // when they began counting
}

// Waiting is what a tenant's put-back tasks wait for: the same tasks
// counted by what brings them back (a booked slot, the end of what stops
// them, a free concurrency slot) and by why they were put back (ByCause).
type Waiting struct {
	ForTurn   int                  `json:"for_their_turn"`     // a booked slot (at the tenant's rate, its upstream's, or after a pause)
	ForOther  int                  `json:"for_quota_or_pause"` // nothing booked: a quota used up, a pause, an outage
	ForSlot   int                  `json:"for_a_slot"`         // a concurrency slot
	ByCause   asynqrequeue.ByCause `json:"by_cause"`           // why: rate, upstream, quota, hold, concurrency, outage, invalid
	NextDueIn time.Duration        `json:"-"`                  // until the first of them is due; 0: none, or DueNow
	DueNow    bool                 `json:"due_now"`            // the first one's time has come: it runs as soon as a worker takes it
	DrainIn   time.Duration        `json:"-"`                  // about how long its tasks in the queues take at the rate it runs at now; 0: none
}

// Quota is the state of a tenant's period quota.
type Quota struct {
	Limit     int64         // tokens per period
	Used      int64         // tokens spent this period
	Remaining int64         // Limit - Used
	ResetsIn  time.Duration // time until the period ends; 0 when unknown
}

// Tasks counts a tenant's tasks by asynq state.
type Tasks struct {
	Pending   int `json:"pending"`
	Scheduled int `json:"scheduled"` // includes tasks put back by a throttled worker
	Retry     int `json:"retry"`
	Active    int `json:"active"`
	Archived  int `json:"archived"`
}

// FromStanding combines the limiter's standing of a tenant with its tasks.
func FromStanding(s throttle.Standing, t Tasks) Status {
	st := Status{
		Tenant:   s.Tenant,
		Policy:   s.Policy,
		Explicit: s.Explicit,
		Tokens:   s.Remaining,
		FullIn:   s.ResetAfter,
		Paused:   s.Reason == throttle.ReasonPaused,
		Holds:    s.Holds,
		InFlight: s.InFlight,
		HoldLeft: s.HoldLeft,

		LearnedRate:   s.LearnedRate,
		LearnedFullIn: s.LearnedFullIn,
		Booked:        s.Booked,
		Tasks:         t,
	}
	if !s.Allowed && s.Reason == throttle.ReasonRate || st.Paused {
		st.NextTokenIn = max(s.RetryAfter, 0)
	}
	if s.Policy.Quota > 0 {
		rem := s.QuotaRemaining
		if rem < 0 {
			rem = s.Policy.Quota
		}
		st.Quota = &Quota{
			Limit:     s.Policy.Quota,
			Remaining: rem,
			Used:      max(s.Policy.Quota-rem, 0),
			ResetsIn:  s.QuotaResetAfter,
		}
	}
	return st
}

// drainIn estimates how long s's tasks in the queues take at the rate it
// runs at now (its policy's, or the slower one learned from its upstream),
// after its pause: a lower bound when a quota or concurrency limit binds.
func drainIn(s Status) time.Duration {
	n := s.Tasks.Pending + s.Tasks.Scheduled
	rate := s.Policy.Rate
	if s.LearnedRate > 0 {
		rate = s.LearnedRate
	}
	if n == 0 || rate <= 0 {
		return 0
	}
	return s.HoldLeft + time.Duration(float64(n)/rate*float64(time.Second))
}

// ShadowMode returns what workers in shadow mode recorded under l's prefix
// on rdb, asynq's Redis, with no tenant's count; nil when no worker runs in
// shadow nor did lately.
func ShadowMode(ctx context.Context, l *throttle.Limiter, rdb redis.UniversalClient) (*Shadow, error) {
	st, err := shadowrec.Read(ctx, rdb, l.Prefix())
	if err != nil || !st.On() {
		return nil, err
	}
	return &Shadow{Workers: st.Workers, Since: st.Since}, nil
}

// Options narrows what Collect looks at.
type Options struct {
	// Tenants to report; empty: every tenant with a policy of its own or
	// with tasks in the queues.
	Tenants []string
	// Queues to count tasks in; empty: every queue asynq knows.
	Queues []string
	// Concurrency of the limiter reads; 0 means 8.
	Concurrency int
	// Asynq is asynq's Redis, to count the tasks waiting for a slot of a
	// tenant with a concurrency limit; nil: not counted.
	Asynq redis.UniversalClient
}

// Collect returns the standing of the tenants opts selects, sorted by id.
// Task counts come from listing the queues, so they are a snapshot taken
// over the time the listing runs: on a busy queue they can be off by the
// tasks that moved meanwhile.
func Collect(ctx context.Context, l *throttle.Limiter, insp *asynq.Inspector, opts Options) ([]Status, error) {
	for _, t := range opts.Tenants {
		if err := throttle.ValidateID(t); err != nil {
			return nil, fmt.Errorf("tenantstatus: %w", err)
		}
	}
	tasks, err := CountTasks(ctx, insp, opts.Queues)
	if err != nil {
		return nil, err
	}
	ids := opts.Tenants
	if len(ids) == 0 {
		seen := map[string]bool{}
		explicit, err := l.Tenants(ctx)
		if err != nil {
			return nil, fmt.Errorf("tenantstatus: list tenants: %w", err)
		}
		for _, t := range explicit {
			seen[t] = true
		}
		for t := range tasks {
			if throttle.ValidateTenant(t) == nil {
				seen[t] = true
			}
		}
		for t := range seen {
			ids = append(ids, t)
		}
	}
	sort.Strings(ids)
	var shadow shadowrec.State
	if opts.Asynq != nil {
		if shadow, err = shadowrec.Read(ctx, opts.Asynq, l.Prefix(), ids...); err != nil {
			return nil, fmt.Errorf("tenantstatus: %w", err)
		}
	}
	out := make([]Status, len(ids))
	conc := opts.Concurrency
	if conc <= 0 {
		conc = 8
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for range min(conc, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s, err := l.Standing(ctx, ids[i])
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("tenantstatus: tenant %q: %w", ids[i], err)
					}
					mu.Unlock()
					continue
				}
				out[i] = FromStanding(s, tasks[ids[i]])
				if shadow.On() {
					out[i].Shadow = &Shadow{Workers: shadow.Workers, WouldThrottle: shadow.Throttled[ids[i]], Since: shadow.Since}
				}
				if opts.Asynq != nil && out[i].Tasks.Scheduled > 0 {
					w, err := asynqrequeue.New(opts.Asynq).Waiting(ctx, ids[i])
					if err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = fmt.Errorf("tenantstatus: tenant %q: %w", ids[i], err)
						}
						mu.Unlock()
						continue
					}
					out[i].Waiting = Waiting{ForTurn: w.ForTurn, ForOther: w.ForOther, ForSlot: w.ForSlot, ByCause: w.ByCause}
					if !w.NextDue.IsZero() {
						if d := time.Until(w.NextDue); d > 0 {
							out[i].Waiting.NextDueIn = d
						} else {
							out[i].Waiting.DueNow = true
						}
					}
				}
				out[i].Waiting.DrainIn = drainIn(out[i])
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// MarshalJSON renders a Status for scripts: durations in seconds (numbers),
// the policy's quota period as a Go duration string ("24h0m0s", as flags
// take it), "quota": null when there is none.
func (s Status) MarshalJSON() ([]byte, error) {
	type policy struct {
		Rate        float64 `json:"rate"`
		Burst       int64   `json:"burst"`
		Quota       int64   `json:"quota"`
		QuotaPeriod string  `json:"quota_period"`
		Concurrency int64   `json:"concurrency"`
		Explicit    bool    `json:"explicit"`
	}
	type quota struct {
		Limit           int64   `json:"limit"`
		Used            int64   `json:"used"`
		Remaining       int64   `json:"remaining"`
		ResetsInSeconds float64 `json:"resets_in_seconds"`
	}
	type shadow struct {
		Workers       int       `json:"workers"`
		WouldThrottle int64     `json:"would_throttle"`
		Since         time.Time `json:"since"`
	}
	var sh *shadow
	if s.Shadow != nil {
		sh = &shadow{s.Shadow.Workers, s.Shadow.WouldThrottle, s.Shadow.Since.UTC()}
	}
	type waiting struct {
		Waiting
		NextDueInSeconds float64 `json:"next_due_in_seconds"`
		DrainInSeconds   float64 `json:"drain_in_seconds"`
	}
	var q *quota
	if s.Quota != nil {
		q = &quota{s.Quota.Limit, s.Quota.Used, s.Quota.Remaining, s.Quota.ResetsIn.Seconds()}
	}
	return json.Marshal(struct {
		Tenant             string  `json:"tenant"`
		Policy             policy  `json:"policy"`
		Tokens             int64   `json:"tokens"`
		NextTokenInSeconds float64 `json:"next_token_in_seconds"`
		FullInSeconds      float64 `json:"full_in_seconds"`
		Paused             bool    `json:"paused"`
		HoldLeftSeconds    float64 `json:"hold_left_seconds"`
		LearnedRate        float64 `json:"learned_rate"` // 0: at the policy's rate
		LearnedFullInSecs  float64 `json:"learned_full_in_seconds"`
		Booked             int64   `json:"booked"`
		Holds              int64   `json:"holds"`
		InFlight           int64   `json:"in_flight"`
		Waiting            waiting `json:"waiting"`
		Quota              *quota  `json:"quota"`
		Tasks              Tasks   `json:"tasks"`
		Shadow             *shadow `json:"shadow,omitempty"` // workers in shadow mode
	}{
		Tenant:             s.Tenant,
		Policy:             policy{s.Policy.Rate, s.Policy.Burst, s.Policy.Quota, s.Policy.QuotaPeriod.String(), s.Policy.Concurrency, s.Explicit},
		Tokens:             s.Tokens,
		NextTokenInSeconds: s.NextTokenIn.Seconds(),
		FullInSeconds:      s.FullIn.Seconds(),
		Paused:             s.Paused,
		HoldLeftSeconds:    s.HoldLeft.Seconds(),
		LearnedRate:        s.LearnedRate,
		LearnedFullInSecs:  s.LearnedFullIn.Seconds(),
		Booked:             s.Booked,
		Holds:              s.Holds,
		InFlight:           s.InFlight,
		Waiting:            waiting{s.Waiting, s.Waiting.NextDueIn.Seconds(), s.Waiting.DrainIn.Seconds()},
		Quota:              q,
		Tasks:              s.Tasks,
		Shadow:             sh,
	})
}
