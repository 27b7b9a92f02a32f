package redisconn

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestEmbeddedSaysItNeverEvicts: another process reaching the embedded
// Redis (quotaq-enqueue, a second worker) reads its maxmemory-policy as
// noeviction instead of warning that it cannot tell, over RESP2 and RESP3.
func TestEmbeddedSaysItNeverEvicts(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	conn, err := openEmbedded("127.0.0.1:0", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx := context.Background()
	addr := conn.Redis.(*redis.Client).Options().Addr
	for _, protocol := range []int{2, 3} {
		other := redis.NewClient(&redis.Options{Addr: addr, Protocol: protocol})
		p, err := evictionPolicy(ctx, other)
		if err != nil || p != NoEviction {
			t.Errorf("RESP%d: maxmemory-policy %q, %v; want %q", protocol, p, err, NoEviction)
		}
		if err := other.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err == nil {
			t.Errorf("RESP%d: CONFIG SET accepted, want refused", protocol)
		}
		_ = other.Close()
	}
}
