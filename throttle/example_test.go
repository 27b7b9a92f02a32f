package throttle_test

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
)

func Example() {
	srv, _ := miniredis.Run() // any Redis: a single node, Sentinel or Cluster
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	ctx := context.Background()

	limiter := throttle.New(rdb, throttle.WithDefaultPolicy(throttle.PerSecond(10)))
	_ = limiter.SetPolicy(ctx, "acme", throttle.Policy{Rate: 2, Burst: 2, Quota: 10000, QuotaPeriod: 24 * time.Hour})

	for i := 0; i < 3; i++ {
		r, err := limiter.Allow(ctx, "acme")
		if err != nil {
			panic(err)
		}
		fmt.Println(r.Allowed, r.Remaining, r.Reason)
	}
	// Output:
	// true 1 none
	// true 0 none
	// false 0 rate
}
