package throttle_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// FuzzLeanMatchesGeneral drives three Limiters through the same sequence of
// calls on one miniredis (whose clock and TTLs the test moves): one deciding
// every call with the general script (decide.lua), one with lean.lua, one
// with lean.lua in batches. Every answer must be the same. The sequence
// includes everything that changes what lean.lua caches in its state:
// SetPolicy, DeletePolicy, Hold, tickets booked, redeemed and cancelled,
// decisions over two ids (written by the general script), quota resets, and
// keys that expire.
func FuzzLeanMatchesGeneral(f *testing.F) {
	m, c := miniClient(f, time.Time{})
	var seq atomic.Int64

	f.Add(uint8(1), uint8(4), []byte{1, 0, 1, 1, 2, 3, 2, 7, 0, 10, 2, 3, 0, 100, 2, 3, 1, 0})
	f.Add(uint8(2), uint8(2), []byte{4, 1, 1, 0, 1, 0, 5, 0, 1, 0, 4, 2, 1, 1, 0, 200, 1, 1})
	f.Add(uint8(0), uint8(5), []byte{2, 17, 2, 18, 3, 40, 2, 19, 0, 20, 2, 17, 6, 2, 2, 18, 0, 255, 2, 18})
	f.Add(uint8(3), uint8(9), []byte{7, 1, 1, 0, 7, 2, 1, 1, 4, 3, 1, 0, 8, 0, 1, 0, 9, 30, 4, 1, 1, 3, 1, 3, 1, 3})
	f.Add(uint8(4), uint8(0), []byte{1, 2, 0, 2, 10, 0, 3, 9, 10, 0, 1, 0, 0, 255, 0, 255, 1, 0, 10, 0})
	f.Add(uint8(1), uint8(1), []byte{2, 33, 2, 34, 7, 0, 2, 33, 0, 50, 2, 34, 6, 1, 2, 33, 5, 0, 2, 34})

	defaults := []throttle.Policy{
		{Rate: 2, Burst: 3},
		{Rate: 10, Burst: 1, Quota: 5},
		{Rate: 0.5, Burst: 4, Quota: 3, QuotaPeriod: 2 * time.Second},
		{Rate: 1000, Burst: 20},
		{Rate: 7, Burst: 2},
	}
	own := []throttle.Policy{
		{Rate: 4, Burst: 2},
		{Rate: 1, Burst: 5, Quota: 6},
		{Rate: 100, Burst: 3, Quota: 4, QuotaPeriod: time.Second},
		{Rate: 0.25, Burst: 1},
	}
	tickets := []string{"", "job-1", "job-2", "job-3"}
	start := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

	f.Fuzz(func(t *testing.T, defSel, firstSel uint8, ops []byte) {
		ctx := context.Background()
		def := throttle.WithDefaultPolicy(defaults[int(defSel)%len(defaults)])
		m.SetTime(start)
		now := start
		id := seq.Add(1)
		ls := []*throttle.Limiter{
			throttle.New(c, throttle.WithPrefix(fmt.Sprintf("lg%d", id)), def, throttle.WithGeneralPath()),
			throttle.New(c, throttle.WithPrefix(fmt.Sprintf("ll%d", id)), def),
			throttle.New(c, throttle.WithPrefix(fmt.Sprintf("lb%d", id)), def, throttle.WithBatching(0, 0)),
		}
		names := []string{"general", "lean", "lean+batch"}
		if firstSel%2 == 1 {
			for _, l := range ls {
				if err := l.SetPolicy(ctx, "t", own[int(firstSel/2)%len(own)]); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := 0; i+1 < len(ops) && i < 400; i += 2 {
			op, arg := ops[i], ops[i+1]
			n := int64(arg%3) + 1
			var what string
			var call func(l *throttle.Limiter) (any, error)
			switch op % 11 {
			case 0:
				d := time.Duration(arg)*7*time.Millisecond + time.Microsecond
				now = now.Add(d)
				m.SetTime(now)
				m.FastForward(d)
				continue
			case 1:
				what = fmt.Sprintf("AllowN(%d)", n)
				call = func(l *throttle.Limiter) (any, error) { return l.AllowN(ctx, "t", n) }
			case 2:
				req := throttle.Request{IDs: []string{"t"}, N: n, Ticket: tickets[(arg/3)%4], KeepTicket: arg&16 != 0}
				if arg&32 != 0 {
					req.MaxWait = time.Duration(arg/64+1) * 300 * time.Millisecond
				}
				what = fmt.Sprintf("Reserve(%+v)", req)
				call = func(l *throttle.Limiter) (any, error) { return l.Reserve(ctx, req) }
			case 3:
				d := time.Duration(arg)*11*time.Millisecond + time.Millisecond
				what = fmt.Sprintf("Hold(%s)", d)
				call = func(l *throttle.Limiter) (any, error) { return nil, l.Hold(ctx, "t", d) }
			case 4:
				p := own[int(arg)%len(own)]
				what = fmt.Sprintf("SetPolicy(%v)", p)
				call = func(l *throttle.Limiter) (any, error) { return nil, l.SetPolicy(ctx, "t", p) }
			case 5:
				what = "DeletePolicy"
				call = func(l *throttle.Limiter) (any, error) { return nil, l.DeletePolicy(ctx, "t") }
			case 6:
				req := throttle.Request{IDs: []string{"t"}, N: n, Ticket: tickets[1+int(arg)%3]}
				what = fmt.Sprintf("CancelTicket(%+v)", req)
				call = func(l *throttle.Limiter) (any, error) { return nil, l.CancelTicket(ctx, req) }
			case 7:
				what = fmt.Sprintf("AllowMulti(%d, t, u)", n)
				call = func(l *throttle.Limiter) (any, error) { return l.AllowMulti(ctx, n, "t", "u") }
			case 8:
				what = "ResetQuota"
				call = func(l *throttle.Limiter) (any, error) { return nil, l.ResetQuota(ctx, "t") }
			case 9:
				at := now.Add(time.Duration(arg) * 100 * time.Millisecond)
				what = fmt.Sprintf("SetQuotaReset(+%s)", at.Sub(now))
				call = func(l *throttle.Limiter) (any, error) { return nil, l.SetQuotaReset(ctx, "t", at) }
			case 10:
				what = "Peek"
				call = func(l *throttle.Limiter) (any, error) { return l.Peek(ctx, "t") }
			}
			want, werr := call(ls[0])
			for k, l := range ls[1:] {
				got, gerr := call(l)
				if got != want || (werr == nil) != (gerr == nil) {
					t.Fatalf("step %d at %s, %s:\n%10s %+v, %v\n%10s %+v, %v",
						i/2, now.Sub(start), what, names[0], want, werr, names[k+1], got, gerr)
				}
			}
		}
	})
}

// TestLeanStateLingers moves miniredis's clock and TTLs together: lean.lua
// keeps the TTL it finds when it still has LINGER/2 to run (most writes), and
// sets a new one of LINGER otherwise, so a tenant's state lives LINGER/2 to
// LINGER after its last admission, and always until its bucket is full.
func TestLeanStateLingers(t *testing.T) {
	t.Parallel()
	const linger = 10 * time.Second
	for _, tc := range []struct {
		name   string
		policy throttle.Policy
		admit  []time.Duration // when, from the start, one token each
		alive  time.Duration   // the key is still there then
		gone   time.Duration   // and gone then
	}{
		{"one admission", throttle.Policy{Rate: 10, Burst: 20}, []time.Duration{0}, linger - time.Millisecond, linger},
		{"kept, then renewed", throttle.Policy{Rate: 10, Burst: 20},
			[]time.Duration{0, 4 * time.Second, 6 * time.Second, 9 * time.Second},
			9*time.Second + linger/2, 6*time.Second + linger},
		{"renewed at once when less than LINGER/2 is left", throttle.Policy{Rate: 10, Burst: 20},
			[]time.Duration{0, 5*time.Second + time.Millisecond}, 15 * time.Second, 15*time.Second + 2*time.Millisecond},
		{"a bucket slower to refill than its TTL", throttle.Policy{Rate: 0.05, Burst: 3},
			// 3 tokens at 1 per 20 s: full 60 s after the first, 40 s after the third
			[]time.Duration{0, time.Second, 2 * time.Second}, 60*time.Second - time.Millisecond, 60 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, m := setupClock(t, t0, throttle.WithDefaultPolicy(tc.policy))
			at := time.Duration(0)
			advance := func(to time.Duration) {
				m.SetTime(t0.Add(to))
				m.FastForward(to - at)
				at = to
			}
			for _, d := range tc.admit {
				advance(d)
				if r := mustAllowN(t, l, "t", 1); !r.Allowed {
					t.Fatalf("at %s: refused %+v", d, r)
				}
			}
			advance(tc.alive)
			if ks := m.Keys(); len(ks) != 1 {
				t.Fatalf("keys at %s: %v, want the state", tc.alive, ks)
			}
			advance(tc.gone)
			if ks := m.Keys(); len(ks) != 0 {
				t.Fatalf("keys at %s: %v, want none", tc.gone, ks)
			}
		})
	}
}

// TestLeanStateOfAnotherVersion: a token bucket state lean.lua does not
// know, as another version of quotaq may write during an upgrade, is decided
// by the general script, which reads its head; one that no version wrote is
// an error that says what to do.
func TestLeanStateOfAnotherVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 3}))
	now, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	us := now.UnixMicro()
	// the previous version's cached state, 2 of 3 tokens taken just now
	old := fmt.Sprintf("%d:%d:%d:0:0:0:0:d", 2*time.Second.Nanoseconds(), us, time.Second.Nanoseconds())
	if err := c.Set(ctx, prefix+":{old}:tb", old, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if r := mustAllowN(t, l, "old", 1); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("first decision on the old state: %+v, want allowed, 0 left", r)
	}
	if r := mustAllowN(t, l, "old", 1); r.Allowed {
		t.Fatalf("second decision: %+v, want refused (the old state's tokens count)", r)
	}
	if err := c.Set(ctx, prefix+":{junk}:tb", "not:a:state", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(ctx, "junk"); err == nil || !strings.Contains(err.Error(), "Reset the tenant") {
		t.Fatalf("Allow on a junk state: %v, want an error that says to reset the tenant", err)
	}
}

// TestLeanReplyFitsOrNot: lean.lua answers a decision without a quota or a
// lease with one packed integer when it waits for nothing or nothing
// remains, and its figures fit, and with a list otherwise; all read back as
// the general script's answer.
func TestLeanReplyFitsOrNot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		policy throttle.Policy
		ns     []int64 // the decisions, one after another
	}{
		{"small", throttle.Policy{Rate: 10, Burst: 20}, []int64{1, 1}},
		{"remaining just fits", throttle.Policy{Rate: 1e6, Burst: 1<<20 - 1 + 1}, []int64{1, 1}},
		{"remaining does not fit", throttle.Policy{Rate: 1e6, Burst: 1<<20 + 1}, []int64{1, 1}},
		{"reset just fits", throttle.Policy{Rate: 1, Burst: 100}, []int64{67, 67}},
		{"reset does not fit", throttle.Policy{Rate: 1, Burst: 100}, []int64{68, 68}},
		{"refused: more than the burst", throttle.Policy{Rate: 1, Burst: 2}, []int64{3, 3}},
		{"refused: a wait that fits", throttle.Policy{Rate: 0.2, Burst: 1}, []int64{1, 1}},
		{"refused: a wait that does not fit", throttle.Policy{Rate: 0.1, Burst: 1}, []int64{1, 1}},
		{"refused: something remains", throttle.Policy{Rate: 1, Burst: 3}, []int64{2, 2}},
		{"refused for ever, nothing remains", throttle.Policy{Rate: 1, Burst: 1}, []int64{1, 2}},
		{"a quota", throttle.Policy{Rate: 1, Burst: 2, Quota: 5}, []int64{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, c := miniClient(t, t0)
			opt := throttle.WithDefaultPolicy(tc.policy)
			general := throttle.New(c, throttle.WithPrefix("g"), opt, throttle.WithGeneralPath())
			lean := throttle.New(c, throttle.WithPrefix("l"), opt)
			for i, n := range tc.ns {
				want := mustAllowN(t, general, "t", n)
				got := mustAllowN(t, lean, "t", n)
				if got != want {
					t.Fatalf("decision %d: lean %+v, general %+v", i, got, want)
				}
			}
		})
	}
}
