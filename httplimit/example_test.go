package httplimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/httplimit"
)

func Example() {
	srv, _ := miniredis.Run() // any Redis: a single node, Sentinel or Cluster
	defer srv.Close()
	srv.SetTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) // a still clock, for the output below
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})

	// 10 requests in any 10 seconds per client IP.
	limit, err := httplimit.New(rdb)
	if err != nil {
		panic(err)
	}
	api := limit.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	}))

	for i := 1; i <= 11; i++ {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "203.0.113.9:51000"
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		if i == 1 || i >= 10 {
			h := w.Header()
			fmt.Printf("%d: %d remaining=%s RateLimit: %s Retry-After: %q\n",
				i, w.Code, h.Get("X-RateLimit-Remaining"), h.Get("RateLimit"), h.Get("Retry-After"))
		}
	}
	// Output:
	// 1: 200 remaining=9 RateLimit: "default";r=9;t=10 Retry-After: ""
	// 10: 200 remaining=0 RateLimit: "default";r=0;t=10 Retry-After: ""
	// 11: 429 remaining=0 RateLimit: "default";r=0;t=10 Retry-After: "10"
}

// Key on an API key only once the application knows it: made-up keys fall
// through to the client's address and share its limit.
func ExampleValidAPIKey() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})

	known := map[string]bool{"k-7f3a": true} // your key store, behind a cache
	limit, err := httplimit.New(rdb, httplimit.WithKey(
		httplimit.ValidAPIKey("X-API-Key", func(_ *http.Request, key string) bool { return known[key] }),
		httplimit.ClientIP(),
	))
	if err != nil {
		panic(err)
	}
	for _, key := range []string{"k-7f3a", "made-up", ""} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "203.0.113.9:51000"
		r.Header.Set("X-API-Key", key)
		k := limit.Key(r)
		if key != "" && k == httplimit.APIKeyID(key) {
			k = "APIKeyID(" + key + ")"
		}
		fmt.Printf("%q: %s\n", key, k)
	}
	// Output:
	// "k-7f3a": APIKeyID(k-7f3a)
	// "made-up": ip:203.0.113.9
	// "": ip:203.0.113.9
}
