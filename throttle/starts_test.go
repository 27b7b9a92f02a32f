package throttle_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/wait"
	"github.com/quotaq/quotaq/throttle"
)

// worstExcess returns, over every window between two starts, the most
// starts beyond what policy p allows in it (burst + rate × window): 0 or
// less when the starts keep to the policy.
func worstExcess(starts []time.Time, p throttle.Policy) float64 {
	s := append([]time.Time(nil), starts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Before(s[j]) })
	worst := -float64(p.Burst)
	for i := range s {
		for j := i; j < len(s); j++ {
			allowed := float64(p.Burst) + p.Rate*s[j].Sub(s[i]).Seconds()
			worst = max(worst, float64(j-i+1)-allowed)
		}
	}
	return worst
}

// book reserves one token for each of tickets at once and returns their
// delays.
func book(t *testing.T, l *throttle.Limiter, tenant string, tickets []string) []time.Duration {
	t.Helper()
	out := make([]time.Duration, len(tickets))
	for i, tk := range tickets {
		res, err := l.Reserve(context.Background(), throttle.Request{IDs: []string{tenant}, N: 1, Ticket: tk})
		if err != nil || !res.OK {
			t.Fatalf("booking %s: %+v %v", tk, res, err)
		}
		out[i] = res.Delay
	}
	return out
}

func ticketNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint("job-", i)
	}
	return out
}

// A job that comes back long after its slot (its worker was stopped, Redis
// was away, its queue was paused) does not start with every other late job:
// the late ones take their turn, the burst at once (less the one token the
// starts keep in reserve) and then one interval apart, each told when to
// come back; the policy holds for the starts.
func TestLateTicketsTakeTheirTurn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := throttle.Policy{Rate: 2, Burst: 2}
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(p))
	tickets := ticketNames(10)
	delays := book(t, l, "acme", tickets)
	var starts []time.Time
	for i, d := range delays {
		if d == 0 {
			starts = append(starts, t0)
			tickets[i] = ""
		}
	}
	if len(starts) != 2 {
		t.Fatalf("admitted at once: %d, want the burst of 2 (delays %v)", len(starts), delays)
	}

	// everything comes back 20 s later, at one instant
	now := t0.Add(20 * time.Second)
	m.SetTime(now)
	next := map[string]time.Time{}
	for _, tk := range tickets[2:] {
		res, err := l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: tk})
		if err != nil || !res.OK {
			t.Fatalf("late %s: %+v %v", tk, res, err)
		}
		if res.Delay == 0 {
			starts = append(starts, now)
		} else {
			next[tk] = now.Add(res.Delay)
		}
	}
	if late := len(starts) - 2; late != 1 {
		t.Fatalf("late jobs started at one instant: %d, want the burst of 2 less the reserve", late)
	}
	// a new job waits behind them
	if r := mustAllowN(t, l, "acme", 1); r.Allowed {
		t.Fatalf("a new job started while late ones still had their turn: %+v", r)
	}
	// each comes back when told, and starts then without paying again
	order := slices.SortedFunc(maps.Keys(next), func(a, b string) int { return next[a].Compare(next[b]) })
	for _, tk := range order {
		at := next[tk]
		m.SetTime(at)
		res, err := l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: tk})
		if err != nil || !res.Result.Allowed {
			t.Fatalf("%s back at %s: %+v %v", tk, at.Sub(now), res, err)
		}
		starts = append(starts, at)
	}
	// new jobs right after the last late one: they see the late ones'
	// starts, though no ticket is left
	last := next[order[len(order)-1]]
	for range p.Burst + 1 {
		if r := mustAllowN(t, l, "acme", 1); r.Allowed {
			starts = append(starts, last)
		}
	}
	if ex := worstExcess(starts, p); ex > 0 {
		t.Fatalf("starts exceed the policy by %.2f: %v", ex, starts)
	}
}

// Jobs that come back at their slot start then: pacing the starts costs a
// steady backlog nothing.
func TestOnTimeTicketsStartAtTheirSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name string
		p    throttle.Policy
		late time.Duration // how late each comes back
	}{
		{"Exact", throttle.Policy{Rate: 10, Burst: 2}, 0},
		{"BurstOfOne", throttle.Policy{Rate: 50, Burst: 1}, 0},
		{"LateByLessThanAnInterval", throttle.Policy{Rate: 10, Burst: 3}, 40 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, m := setupClock(t, t0, throttle.WithDefaultPolicy(tt.p))
			tickets := ticketNames(12)
			delays := book(t, l, "acme", tickets)
			for i, d := range delays {
				if d == 0 {
					continue
				}
				m.SetTime(t0.Add(d + tt.late))
				res, err := l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: tickets[i]})
				if err != nil || !res.Result.Allowed {
					t.Fatalf("%s back at its slot %s (+%s): %+v %v", tickets[i], d, tt.late, res, err)
				}
			}
		})
	}
}

// On a real redis-server: jobs whose slots have all passed, redeemed at
// once from many goroutines, start no more than the burst less the
// starts' reserve (and what the bucket refills while they ask); the others
// are each given a later turn.
func TestLateTicketsTakeTheirTurnConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := throttle.Policy{Rate: 20, Burst: 2}
	l, _ := setup(t, throttle.WithDefaultPolicy(p))
	tickets := ticketNames(12)
	delays := book(t, l, "acme", tickets)
	last := time.Now().Add(delays[len(delays)-1])
	wait.For(t, 5*time.Second, "every slot to pass and the bucket to refill", func() bool {
		r, err := l.Peek(ctx, "acme")
		return err == nil && time.Now().After(last) && r.Remaining == p.Burst
	})
	var mu sync.Mutex
	var admitted int
	var turns []time.Duration
	var wg sync.WaitGroup
	for _, tk := range tickets[2:] {
		wg.Go(func() {
			res, err := l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: tk})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil || !res.OK:
				t.Errorf("late %s: %+v %v", tk, res, err)
			case res.Delay == 0:
				admitted++
			default:
				turns = append(turns, res.Delay)
			}
		})
	}
	wg.Wait()
	// the burst less the reserve, and one more if an interval (50 ms)
	// passed meanwhile
	if admitted < 1 || admitted > 2 {
		t.Fatalf("%d late jobs started at once, want the burst of 2 less the reserve", admitted)
	}
	sort.Slice(turns, func(i, j int) bool { return turns[i] < turns[j] })
	for i := 1; i < len(turns); i++ {
		if gap := turns[i] - turns[i-1]; gap < 45*time.Millisecond {
			t.Fatalf("late jobs given turns %s apart, want an interval (50ms): %v", gap, turns)
		}
	}
}
