package enqueuecli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/tenantstatus"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// spec is one task to enqueue, from the flags or from an NDJSON line.
type spec struct {
	Tenant    string
	Type      string
	Payload   []byte // the user's bytes, as given
	Queue     string
	In        time.Duration // asynq.ProcessIn; 0: none
	At        time.Time     // asynq.ProcessAt; zero: none
	MaxRetry  int           // asynq.MaxRetry; -1: asynq's default
	Timeout   time.Duration // asynq.Timeout; 0: asynq's default
	Deadline  time.Time     // asynq.Deadline; zero: none
	Unique    time.Duration // asynq.Unique; 0: none
	Retention time.Duration // asynq.Retention; 0: none
	ID        string        // asynq.TaskID; "": asynq picks one
	Headers   map[string]string
	Shape     bool  // book the tenant's tokens now and enqueue at their slot (worker.Shaper)
	Cost      int64 // tokens and quota units, put into the cost header; 0: none given
}

// check validates s; where says where s came from ("line 7: ", or "" for
// flags) and flagName maps a field to how the user wrote it.
func (s *spec) check(flagName func(string) string) error {
	if err := throttle.ValidateTenant(s.Tenant); err != nil {
		if s.Tenant == "" {
			return fmt.Errorf("no tenant: give %s", flagName("tenant"))
		}
		return fmt.Errorf("%s: %w", flagName("tenant"), err)
	}
	if strings.TrimSpace(s.Type) == "" {
		return fmt.Errorf("no task type: give %s (e.g. email:send)", flagName("type"))
	}
	if s.Payload != nil && !json.Valid(s.Payload) {
		return fmt.Errorf("%s is not valid JSON: %s", flagName("payload"), truncate(string(s.Payload), 60))
	}
	if strings.TrimSpace(s.Queue) == "" {
		return fmt.Errorf("%s is empty", flagName("queue"))
	}
	if s.In < 0 {
		return fmt.Errorf("%s %s is negative (use e.g. 30s)", flagName("in"), s.In)
	}
	if s.In > 0 && !s.At.IsZero() {
		return fmt.Errorf("%s and %s both given; keep one", flagName("in"), flagName("at"))
	}
	if s.MaxRetry < -1 {
		return fmt.Errorf("%s %d is negative", flagName("max-retry"), s.MaxRetry)
	}
	if s.Timeout < 0 {
		return fmt.Errorf("%s %s is negative (use e.g. 30s)", flagName("timeout"), s.Timeout)
	}
	if s.Unique != 0 && s.Unique < time.Second {
		return fmt.Errorf("%s %s is below asynq's minimum of 1s", flagName("unique"), s.Unique)
	}
	if s.Retention < 0 {
		return fmt.Errorf("%s %s is negative", flagName("retention"), s.Retention)
	}
	if v, ok := s.Headers[worker.UpstreamHeader]; ok {
		if err := throttle.ValidateUpstream(v); err != nil {
			return fmt.Errorf("header %q: %w", worker.UpstreamHeader, err)
		}
	}
	if v, ok := s.Headers[worker.CostHeader]; ok {
		n, err := worker.ParseCost(v)
		if err != nil {
			return fmt.Errorf("header %q: %w", worker.CostHeader, err)
		}
		if s.Cost != 0 && n != s.Cost {
			return fmt.Errorf("header %q is %q but %s is %d; drop the header, %s sets it", worker.CostHeader, v, flagName("cost"), s.Cost, flagName("cost"))
		}
	}
	if v, ok := s.Headers[tenantstatus.TenantHeader]; ok && v != s.Tenant {
		return fmt.Errorf("header %q is %q but the tenant is %q; drop the header, the tenant sets it", tenantstatus.TenantHeader, v, s.Tenant)
	}
	return nil
}

// item is one task to enqueue and how: its enqueue options are kept apart
// from the task, where a worker.Shaper can read its queue and id.
type item struct {
	task  *asynq.Task
	opts  []asynq.Option
	shape bool
	cost  int64 // what the worker will charge it
	line  int   // its NDJSON line; 0: from the flags
	// costByHeader says the cost came from a "cost" header given as such
	// (--header, a line's "headers"), for error messages
	costByHeader bool
}

// item builds the asynq task: the tenant goes into the TenantHeader header,
// a cost given into the CostHeader header, the payload is the user's,
// untouched. s must have been checked.
func (s *spec) item() item {
	headers := make(map[string]string, len(s.Headers)+2)
	for k, v := range s.Headers {
		headers[k] = v
	}
	headers[tenantstatus.TenantHeader] = s.Tenant
	it := item{opts: s.options(), shape: s.Shape, cost: 1}
	if v, ok := headers[worker.CostHeader]; ok && s.Cost == 0 {
		it.cost, _ = worker.ParseCost(v) // checked
		it.costByHeader = true
	}
	if s.Cost > 0 {
		it.cost = s.Cost
		headers[worker.CostHeader] = strconv.FormatInt(s.Cost, 10)
	}
	if _, ok := headers[worker.ReadyHeader]; !ok {
		worker.StampReady(headers, it.opts...)
	}
	it.task = asynq.NewTaskWithHeaders(s.Type, s.Payload, headers)
	return it
}

func (s *spec) options() []asynq.Option {
	opts := []asynq.Option{asynq.Queue(s.Queue)}
	if s.In > 0 {
		opts = append(opts, asynq.ProcessIn(s.In))
	}
	if !s.At.IsZero() {
		opts = append(opts, asynq.ProcessAt(s.At))
	}
	if s.MaxRetry >= 0 {
		opts = append(opts, asynq.MaxRetry(s.MaxRetry))
	}
	if s.Timeout > 0 {
		opts = append(opts, asynq.Timeout(s.Timeout))
	}
	if !s.Deadline.IsZero() {
		opts = append(opts, asynq.Deadline(s.Deadline))
	}
	if s.Unique > 0 {
		opts = append(opts, asynq.Unique(s.Unique))
	}
	if s.Retention > 0 {
		opts = append(opts, asynq.Retention(s.Retention))
	}
	if s.ID != "" {
		opts = append(opts, asynq.TaskID(s.ID))
	}
	return opts
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...", s[:n])
}

// parseTime reads a time as RFC 3339 ("2026-11-22T09:00:00Z").
func parseTime(what, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q is not a time (use RFC 3339, e.g. 2026-11-22T09:00:00Z)", what, v)
	}
	return t, nil
}

// parseDuration reads a Go duration ("30s", "5m").
func parseDuration(what, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a duration (use e.g. 30s, 5m, 1h)", what, v)
	}
	return d, nil
}
