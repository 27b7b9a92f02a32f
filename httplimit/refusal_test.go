package httplimit

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// A client hammering past its limit is refused by the process itself until
// its Retry-After, without a decision script each time, and admitted again
// as soon as Retry-After has passed. Without the refusal cache every request
// runs a script.
func TestHammeringClientCostsNoScriptsWhileRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		opts       []Option
		mostScript int64 // scripts run while the client is refused
	}{
		{"Default", nil, 3},
		{"Off", []Option{WithRefusalCache(0)}, -1}, // -1: one per request
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb, prefix := redistest.Client(t)
			scripts := &redistest.Runs{}
			rdb.AddHook(scripts)
			var last atomic.Pointer[throttle.Result]
			denied := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				res, _, _ := Result(r.Context())
				last.Store(&res)
				w.WriteHeader(http.StatusTooManyRequests)
			})
			// 2 requests in any 200ms
			opts := append([]Option{WithPrefix(prefix), WithPolicy(throttle.Policy{Rate: 10, Burst: 2}), WithDenied(denied)}, tt.opts...)
			b := setupOn(t, rdb, opts...)
			const client = "198.51.100.9:1"
			for i := range 2 {
				if w := b.do(request(client)); w.Code != http.StatusOK {
					t.Fatalf("request %d: status %d, want 200", i+1, w.Code)
				}
			}
			start := time.Now()
			if w := b.do(request(client)); w.Code != http.StatusTooManyRequests {
				t.Fatalf("third request: status %d, want 429", w.Code)
			}
			// Redis refused it for RetryAfter from some time in [start, end]
			end, retry := time.Now(), last.Load().RetryAfter
			if retry <= 0 || retry > 200*time.Millisecond {
				t.Fatalf("third request: RetryAfter %s, want in (0, 200ms]", retry)
			}
			due := end.Add(retry) // every request from then on is admitted
			before := scripts.N.Load()
			requests := 0
			for deadline := time.Now().Add(10 * time.Second); ; requests++ {
				if time.Now().After(deadline) {
					t.Fatalf("still refused 10s after a RetryAfter of %s", retry)
				}
				sent := time.Now()
				s0 := scripts.N.Load()
				w := b.do(request(client))
				if w.Code == http.StatusOK {
					// Redis decided it by the time the answer came back, and
					// no earlier than start + RetryAfter (on a loaded machine
					// a request sent before that may be decided after it).
					// (The sliding window counts whole milliseconds: Redis
					// may admit up to 1ms before its RetryAfter.)
					if back := time.Now(); back.Before(start.Add(retry - time.Millisecond)) {
						t.Fatalf("admitted %s after the refusal, before its RetryAfter %s", back.Sub(start), retry)
					}
					break
				}
				if !sent.Before(due) {
					t.Fatalf("refused %s after the refusal, past its RetryAfter %s", sent.Sub(start), retry)
				}
				if local := scripts.N.Load() == s0; local {
					// told to come back when Redis said, not later
					if back := sent.Add(last.Load().RetryAfter); back.After(due.Add(time.Millisecond)) {
						t.Fatalf("a local refusal said come back %s after the first refusal, Redis said %s",
							back.Sub(start), retry)
					}
				}
			}
			ran := scripts.N.Load() - before
			t.Logf("%d requests while refused for %s, %d scripts", requests, retry, ran)
			if requests < 10 {
				t.Fatalf("only %d requests while refused: the test hammers too slowly to tell", requests)
			}
			switch {
			case tt.mostScript >= 0 && ran > tt.mostScript+1: // +1: the admitted request
				t.Errorf("%d requests while refused ran %d scripts, want at most %d", requests, ran, tt.mostScript+1)
			case tt.mostScript < 0 && ran != int64(requests)+1:
				t.Errorf("%d requests (refusal cache off) ran %d scripts, want one each", requests+1, ran)
			}
		})
	}
}

// Reset through the Middleware's Limiter reaches a locally refused client at
// once.
func TestResetReachesARefusedClientAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, WithPolicy(throttle.Policy{Rate: 0.001, Burst: 1}))
	const client = "198.51.100.10:1"
	b.do(request(client))
	for range 3 {
		if w := b.do(request(client)); w.Code != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429", w.Code)
		}
	}
	if err := b.m.Limiter().Reset(context.Background(), b.m.Key(request(client))); err != nil {
		t.Fatal(err)
	}
	if w := b.do(request(client)); w.Code != http.StatusOK {
		t.Fatalf("after Reset: status %d, want 200", w.Code)
	}
}
