package throttle_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// BenchmarkAllow measures decisions on a real redis-server over 1,000
// tenants, with b.SetParallelism callers (go test -bench Allow -cpu 1,4,16).
// The side-by-side comparison with other limiters lives in bench/.
func BenchmarkAllow(b *testing.B) {
	for _, algo := range []throttle.Algorithm{throttle.TokenBucket, throttle.FixedWindow, throttle.SlidingWindow} {
		b.Run(algo.String(), func(b *testing.B) {
			c := redis.NewClient(&redis.Options{Addr: redistest.Addr(b), PoolSize: 64})
			defer c.Close()
			l := throttle.New(c, throttle.WithPrefix(redistest.Prefix(b)), throttle.WithAlgorithm(algo),
				throttle.WithDefaultPolicy(throttle.Policy{Rate: 1e6, Burst: 1000}))
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
