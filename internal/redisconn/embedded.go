package redisconn

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// embeddedTick is how often the embedded server's TTLs are moved forward by
// the wall-clock time since the last tick. A key expires within one tick of
// its due time (early or late: miniredis keeps TTLs as durations, not
// deadlines).
const embeddedTick = 50 * time.Millisecond

// openEmbedded starts miniredis on addr and a goroutine that advances its TTLs
// by the wall-clock time elapsed, every embeddedTick: miniredis only expires
// keys when told to (FastForward), and asynq's locks, fixed windows and idle
// cleanup rely on expiry.
func openEmbedded(addr string, logger *slog.Logger) (*Conn, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(addr); err != nil {
		return nil, fmt.Errorf("redisconn: start the embedded Redis on %s: %v (is a Redis already running there? point --redis-url at it, or choose another --embedded-addr)", addr, err)
	}
	// miniredis never evicts, but has no CONFIG: the CLI and other
	// processes that reach it would warn that they cannot tell
	if err := m.Server().Register("CONFIG", configGet); err != nil {
		m.Close()
		return nil, fmt.Errorf("redisconn: embedded Redis: %w", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(embeddedTick)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	display := "redis://" + m.Addr() + "/0"
	logger.Info("redisconn: no Redis configured; started an embedded in-memory Redis (miniredis): its data is lost on exit; set REDIS_URL for a real server",
		"addr", display)
	var once sync.Once
	return &Conn{
		Redis:    redis.NewClient(&redis.Options{Addr: m.Addr()}),
		Asynq:    asynq.RedisClientOpt{Addr: m.Addr()},
		Addr:     display,
		Embedded: true,
		stop: func() {
			once.Do(func() {
				close(done)
				wg.Wait()
				m.Close()
			})
		},
	}, nil
}

// configGet answers CONFIG GET maxmemory-policy on the embedded server as a
// Redis that never evicts does; other CONFIG calls are refused.
func configGet(c *server.Peer, cmd string, args []string) {
	if len(args) != 2 || !strings.EqualFold(args[0], "GET") || !strings.EqualFold(args[1], "maxmemory-policy") {
		c.WriteError("ERR the embedded Redis (miniredis) answers only CONFIG GET maxmemory-policy")
		return
	}
	if c.Resp3 {
		c.WriteMapLen(1)
	} else {
		c.WriteLen(2)
	}
	c.WriteBulk("maxmemory-policy")
	c.WriteBulk(NoEviction)
}
