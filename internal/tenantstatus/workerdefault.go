package tenantstatus

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
)

// workerDefaultKey holds the default policy a quotaq-worker was started with
// (--default-rate, --default-burst), which applies until a default is stored
// with SetDefaultPolicy. The last worker started writes it.
func workerDefaultKey(prefix string) string { return prefix + ":worker-default-policy" }

// RecordWorkerDefault stores p as the workers' start-up default policy under
// prefix, so that quotaq-enqueue shows the policy the workers apply rather
// than its own.
func RecordWorkerDefault(ctx context.Context, rdb redis.UniversalClient, prefix string, p throttle.Policy) error {
	return rdb.HSet(ctx, workerDefaultKey(prefix),
		"rate", strconv.FormatFloat(p.Rate, 'g', -1, 64), "burst", strconv.FormatInt(p.Burst, 10)).Err()
}

// WorkerDefault returns the default policy recorded by the workers under
// prefix; ok is false when none was recorded (or it does not parse).
func WorkerDefault(ctx context.Context, rdb redis.UniversalClient, prefix string) (p throttle.Policy, ok bool, err error) {
	m, err := rdb.HGetAll(ctx, workerDefaultKey(prefix)).Result()
	if err != nil || len(m) == 0 {
		return throttle.Policy{}, false, err
	}
	rate, err1 := strconv.ParseFloat(m["rate"], 64)
	burst, err2 := strconv.ParseInt(m["burst"], 10, 64)
	p = throttle.Policy{Rate: rate, Burst: burst}
	if err1 != nil || err2 != nil || p.Validate() != nil {
		return throttle.Policy{}, false, nil
	}
	return p, true, nil
}
