package throttle_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// BenchmarkAllow measures decisions on a real redis-server over 1,000
// tenants, with b.SetParallelism callers (go test -bench Allow -cpu 1,4,16).
// The side-by-side comparison with other limiters lives in bench/.
// The token bucket also runs with batching and with leases (tenants far
// under their limits: most decisions are local).
func BenchmarkAllow(b *testing.B) {
	cases := []struct {
		name string
		opts []throttle.Option
	}{
		{throttle.TokenBucket.String(), nil},
		{throttle.TokenBucket.String() + "+batch", []throttle.Option{throttle.WithBatching(0, 0)}},
		{throttle.TokenBucket.String() + "+lease", []throttle.Option{throttle.WithLeases(100*time.Millisecond, 0)}},
		{throttle.FixedWindow.String(), []throttle.Option{throttle.WithAlgorithm(throttle.FixedWindow)}},
		{throttle.SlidingWindow.String(), []throttle.Option{throttle.WithAlgorithm(throttle.SlidingWindow)}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c := redis.NewClient(&redis.Options{Addr: redistest.Addr(b), PoolSize: 64})
			defer c.Close()
			opts := append([]throttle.Option{throttle.WithPrefix(redistest.Prefix(b)),
				throttle.WithDefaultPolicy(throttle.Policy{Rate: 1e6, Burst: 1000})}, tc.opts...)
			l := throttle.New(c, opts...)
			tenants := make([]string, 1000)
			for i := range tenants {
				tenants[i] = "tenant-" + strconv.Itoa(i)
			}
			var seq atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := l.Allow(ctx, tenants[seq.Add(1)%1000]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
