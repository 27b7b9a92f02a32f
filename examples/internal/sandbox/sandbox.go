// Package sandbox gives one run of an example its own names in Redis, so that
// it can run on a shared Redis (REDIS_URL) without touching anything else,
// and removes what the run left there.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Sandbox names one run's keys and queues.
type Sandbox struct {
	// Prefix starts every key of the run: the limiters' prefixes are
	// Prefix or start with it.
	Prefix string
	queues []string
}

// New returns a sandbox whose prefix is name and a random suffix
// ("quickstart-1f2e3d4c").
func New(name string) *Sandbox {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &Sandbox{Prefix: name + "-" + hex.EncodeToString(b)}
}

// Queue returns the name of one of the run's asynq queues: the prefix, or
// the prefix and suffix.
func (s *Sandbox) Queue(suffix string) string {
	q := s.Prefix
	if suffix != "" {
		q += "-" + suffix
	}
	s.queues = append(s.queues, q)
	return q
}

// Cleanup deletes the run's queues (with their tasks) and every key that
// starts with its prefix.
func (s *Sandbox) Cleanup(rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for _, q := range s.queues {
		if err := insp.DeleteQueue(q, true); err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			errs = append(errs, fmt.Errorf("sandbox: delete queue %s: %w", q, err))
		}
	}
	var keys []string
	iter := rdb.Scan(ctx, 0, s.Prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		errs = append(errs, fmt.Errorf("sandbox: list keys %s*: %w", s.Prefix, err))
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		for _, k := range keys[:n] { // one by one: on a Cluster they are in different slots
			if err := rdb.Del(ctx, k).Err(); err != nil {
				errs = append(errs, fmt.Errorf("sandbox: delete %s: %w", k, err))
				return errors.Join(errs...)
			}
		}
		keys = keys[n:]
	}
	return errors.Join(errs...)
}
