package httplimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// A client whose policy has a concurrency limit of 2: two requests in
// flight, a third is refused with 429 (not counted against its rate), and
// once one returns the next is served.
func TestConcurrentRequestsOfAClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	m, err := New(rdb, WithPrefix(prefix), WithPolicy(throttle.Policy{Rate: 1000, Burst: 1000}), WithPolicyLookup(true))
	if err != nil {
		t.Fatal(err)
	}
	const client = "198.51.100.7:1"
	key := m.Key(request(client))
	if err := m.Limiter().SetPolicy(ctx, key, throttle.Policy{Rate: 1000, Burst: 1000, Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}, 4), make(chan struct{}) // (a request let in wrongly does not block)
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	serve := func() {
		defer wg.Done()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request(client))
		codes <- w.Code
	}
	wg.Add(2)
	go serve()
	go serve()
	<-entered
	<-entered // two requests in flight
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request(client))
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("third request while two are in flight: %d, want 429", w.Code)
	}
	if n, err := m.Limiter().InFlight(ctx, key); err != nil || n != 2 {
		t.Fatalf("in flight: %d, %v; want 2", n, err)
	}
	release <- struct{}{} // one returns (its slot released before its answer)
	if c := <-codes; c != http.StatusOK {
		t.Fatalf("the first request answered %d, want 200", c)
	}
	wg.Add(1)
	go serve()
	select { // the next is served
	case <-entered:
	case c := <-codes:
		t.Fatalf("a request after one returned answered %d, want served", c)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("a request that got a slot answered %d, want 200", c)
		}
	}
	if n, err := m.Limiter().InFlight(ctx, key); err != nil || n != 0 {
		t.Fatalf("in flight after every request returned: %d, %v; want 0", n, err)
	}
}
