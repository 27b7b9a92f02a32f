package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// FuzzCacheIsInvisible drives three Limiters through the same sequence of
// calls on one miniredis (whose clock and TTLs the test moves): one that
// forgets what the token bucket state caches (the policy, "no aux hash")
// before every call, one that decides with it, one that decides with it in
// batches. Every answer must be the same. The sequence includes everything
// that changes what the state caches: SetPolicy, DeletePolicy, Hold,
// tickets booked, redeemed and cancelled, decisions over two ids, quota
// resets, and keys that expire.
func FuzzCacheIsInvisible(f *testing.F) {
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
			throttle.New(c, throttle.WithPrefix(fmt.Sprintf("lg%d", id)), def),
			throttle.New(c, throttle.WithPrefix(fmt.Sprintf("ll%d", id)), def),
			throttle.New(c, throttle.WithPrefix(fmt.Sprintf("lb%d", id)), def, throttle.WithBatching(0, 0)),
		}
		names := []string{"uncached", "cached", "cached+batch"}
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
			for _, id := range []string{"t", "u"} {
				if err := throttle.ForgetCache(ctx, ls[0], id); err != nil {
					t.Fatal(err)
				}
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

// TestStateLingers moves miniredis's clock and TTLs together: a decision
// keeps the TTL it finds when it still has LINGER/2 to run (most writes), and
// sets a new one of LINGER otherwise, so a tenant's state lives LINGER/2 to
// LINGER after its last admission, and always until its bucket is full.
func TestStateLingers(t *testing.T) {
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

// TestStateOfAnotherVersion: during a rolling upgrade, states written by
// earlier versions of quotaq are decided on as they say (their tokens
// count, their lease holds back the refill, a cached "aux hash" makes the
// decision read it); one that no version wrote is an error that says what
// to do, never an outage.
func TestStateOfAnotherVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	p := throttle.Policy{Rate: 1, Burst: 3}
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(p))
	sec, hour := time.Second.Nanoseconds(), time.Hour.Microseconds()
	for _, tc := range []struct {
		name  string
		state string // with the time now, then an hour from now
		aux   bool   // the tenant has a pause
		left  int    // decisions admitted now
	}{
		{"backlog:last", "%[3]d:%[1]d", false, 1},
		{"backlog:last:t", "%[4]d:%[1]d:%[4]d", false, 2},
		{"backlog:last:t:leased:until", "0:%[1]d:%[4]d:2:%[2]d", false, 1},
		{"cached, default policy", "%[3]d:%[1]d:%[4]d:0:0:0:0:0:d", false, 1},
		{"cached, own policy", "%[3]d:%[1]d:%[4]d:0:0:0:0:0:3/0/0", false, 1},
		{"aux hash expiring then", "0:%[1]d:%[4]d:0:0:0:0:%[2]d:d", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := strings.NewReplacer(":", "-", ",", "", " ", "-").Replace(tc.name)
			now, err := c.Time(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			state := fmt.Sprintf(tc.state, now.UnixMicro(), now.UnixMicro()+hour, 2*sec, sec)
			if err := c.Set(ctx, prefix+":{"+id+"}:tb", state, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if tc.aux {
				if err := c.HSet(ctx, prefix+":{"+id+"}:aux", "h", now.UnixMicro()+hour).Err(); err != nil {
					t.Fatal(err)
				}
			}
			admitted := 0
			for range 4 {
				if mustAllowN(t, l, id, 1).Allowed {
					admitted++
				}
			}
			if admitted != tc.left {
				t.Fatalf("state %q: %d admitted of 4, want %d", state, admitted, tc.left)
			}
		})
	}
	if err := c.Set(ctx, prefix+":{junk}:tb", "not:a:state", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := l.Allow(ctx, "junk")
	if err == nil || !strings.Contains(err.Error(), "Reset the tenant") || errors.Is(err, throttle.ErrUnavailable) {
		t.Fatalf("Allow on a junk state: %v, want an error that says to reset the tenant, not an outage", err)
	}
}

// TestBrokenStateRecordIsNotAnOutage: a state record cut short, or with
// numbers no version writes, is an error that says to reset the tenant,
// never an outage.
func TestBrokenStateRecordIsNotAnOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 3}))
	nan := string([]byte{0, 0, 0, 0, 0, 0, 0xf8, 0x7f})
	one := string([]byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f})
	for name, state := range map[string]string{
		"TooShort":     "Qabc",
		"NaNBacklog":   "Q" + nan + strings.Repeat(one, 6),
		"PolicyCutOff": "Q" + strings.Repeat(one, 6) + one, // says it caches its own policy (1), which is missing
	} {
		if err := c.Set(ctx, prefix+":{"+name+"}:tb", state, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		_, err := l.Allow(ctx, name)
		if err == nil || !strings.Contains(err.Error(), "Reset the tenant") || errors.Is(err, throttle.ErrUnavailable) {
			t.Errorf("%s: Allow = %v, want an error that says to reset the tenant, not an outage", name, err)
		}
	}
}
