package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

// Task types. A worker that registers the handlers (RegisterHandlers) runs
// them; the payload is JSON (Reset and Adjust).
const (
	// TypeQuotaReset starts a new quota period for some tenants or all.
	TypeQuotaReset = "quotaq:quota:reset"
	// TypeQuotaAdjust changes the policy of some tenants or all.
	TypeQuotaAdjust = "quotaq:quota:adjust"
)

// Reset is the payload of a TypeQuotaReset task: start a new quota period for
// the listed tenants, or for every tenant when All is set.
type Reset struct {
	Tenants []string `json:"tenants,omitempty"`
	All     bool     `json:"all,omitempty"`

	// NextReset is when the schedule resets these quotas again. The handler
	// records it for each listed tenant (throttle Limiter.SetQuotaReset), or
	// for all (SetDefaultQuotaReset), so
	// that a task refused by the quota is told to come back then. Zero: not
	// known, nothing recorded.
	NextReset time.Time `json:"next_reset,omitzero"`

	// Entry and FireTime name the schedule entry that enqueued the task and
	// its scheduled fire time; both are empty for a task enqueued by hand.
	Entry    string    `json:"entry,omitempty"`
	FireTime time.Time `json:"fire_time,omitzero"`
}

// Validate reports whether r names its tenants correctly.
func (r Reset) Validate() error {
	return validateTarget(r.Tenants, r.All)
}

// Adjust is the payload of a TypeQuotaAdjust task. It sets the listed fields
// of the policy of the listed tenants, or of every tenant when All is set (the
// default policy and every explicit one); a nil field keeps its value.
type Adjust struct {
	Tenants []string `json:"tenants,omitempty"`
	All     bool     `json:"all,omitempty"`

	Rate        *float64       `json:"rate,omitempty"`         // tokens per second, > 0
	Burst       *int64         `json:"burst,omitempty"`        // bucket capacity, >= 1
	Quota       *int64         `json:"quota,omitempty"`        // tokens per quota period, 0 = no quota
	QuotaPeriod *time.Duration `json:"quota_period,omitempty"` // 0 = reset only by TypeQuotaReset
	Concurrency *int64         `json:"concurrency,omitempty"`  // tasks in flight at once, 0 = no limit

	// Adaptive is retired: the limiter learns an upstream's rate from its
	// 429s itself (throttle.Limiter.Backoff). A task that sets it (enqueued
	// by an older version) is archived with an error saying so.
	Adaptive json.RawMessage `json:"adaptive,omitempty"`

	// Entry and FireTime: as in Reset.
	Entry    string    `json:"entry,omitempty"`
	FireTime time.Time `json:"fire_time,omitzero"`
}

// Validate reports whether a is usable, naming the bad field.
func (a Adjust) Validate() error {
	if err := validateTarget(a.Tenants, a.All); err != nil {
		return err
	}
	if len(a.Adaptive) > 0 {
		return fmt.Errorf("field adaptive: %w", errAdaptiveRetired)
	}
	if a.Rate == nil && a.Burst == nil && a.Quota == nil && a.QuotaPeriod == nil && a.Concurrency == nil {
		return fieldErr("rate", "nothing to adjust: set at least one of rate, burst, quota, quota_period, concurrency")
	}
	if a.Concurrency != nil && *a.Concurrency < 0 {
		return fieldErr("concurrency", "%d is negative; use 0 for no limit or the most tasks in flight at once", *a.Concurrency)
	}
	if a.Rate != nil && throttle.ValidateRate(*a.Rate) != nil {
		return fieldErr("rate", "%v must be a number from %v to %v (tokens per second)", *a.Rate, throttle.MinRate, throttle.MaxRate)
	}
	if a.Burst != nil && *a.Burst < 1 {
		return fieldErr("burst", "%d must be >= 1 (bucket capacity in tokens)", *a.Burst)
	}
	if a.Quota != nil && *a.Quota < 0 {
		return fieldErr("quota", "%d is negative; use 0 for no quota or a number of tokens per period", *a.Quota)
	}
	if a.QuotaPeriod != nil && *a.QuotaPeriod < 0 {
		return fieldErr("quota_period", "%s is negative; use 0 (reset only by a quota reset task) or e.g. 24h", *a.QuotaPeriod)
	}
	if a.QuotaPeriod != nil && *a.QuotaPeriod > 0 && a.Quota != nil && *a.Quota == 0 {
		return fieldErr("quota_period", "%s given with quota 0 (no quota); set a quota or drop the period", *a.QuotaPeriod)
	}
	if a.Rate != nil && a.Burst != nil {
		// The throttle's own bounds on the pair (refill time).
		if err := (throttle.Policy{Rate: *a.Rate, Burst: *a.Burst}).Validate(); err != nil {
			return &FieldError{Field: "burst", Err: err}
		}
	}
	return nil
}

// Apply returns p with a's policy fields set (a quota set to 0 without a
// period clears the period too); the others stay.
func (a Adjust) Apply(p throttle.Policy) throttle.Policy {
	if a.Rate != nil {
		p.Rate = *a.Rate
	}
	if a.Burst != nil {
		p.Burst = *a.Burst
	}
	if a.Quota != nil {
		p.Quota = *a.Quota
		if p.Quota == 0 && a.QuotaPeriod == nil {
			p.QuotaPeriod = 0 // no quota, no period
		}
	}
	if a.QuotaPeriod != nil {
		p.QuotaPeriod = *a.QuotaPeriod
	}
	if a.Concurrency != nil {
		p.Concurrency = *a.Concurrency
	}
	return p
}

// NewResetTask returns a TypeQuotaReset task for r, or an error naming the bad
// tenant. opts are passed to asynq.NewTask (e.g. asynq.Queue).
func NewResetTask(r Reset, opts ...asynq.Option) (*asynq.Task, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("scheduler: reset task: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("scheduler: reset task: %w", err)
	}
	return asynq.NewTask(TypeQuotaReset, b, opts...), nil
}

// NewAdjustTask returns a TypeQuotaAdjust task for a, or an error naming the
// bad field. opts are passed to asynq.NewTask (e.g. asynq.Queue).
func NewAdjustTask(a Adjust, opts ...asynq.Option) (*asynq.Task, error) {
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("scheduler: adjust task: %w", err)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("scheduler: adjust task: %w", err)
	}
	return asynq.NewTask(TypeQuotaAdjust, b, opts...), nil
}

// TaskID returns the asynq task ID of the firing of the entry named name at
// its scheduled time fire: "quotaq:schedule:<name>:<unix seconds>". Every
// scheduler replica computes the same ID for the same firing, so asynq
// enqueues it once (the others get asynq.ErrTaskIDConflict).
func TaskID(name string, fire time.Time) string {
	return "quotaq:schedule:" + name + ":" + strconv.FormatInt(fire.Unix(), 10)
}

// ErrBadField is wrapped by the errors of Validate methods and of LoadFile;
// FieldError says which field.
var ErrBadField = errors.New("scheduler: bad field")

// FieldError reports a bad value in a schedule file or a task payload.
type FieldError struct {
	File  string // the schedule file, "" for a payload
	Entry string // the entry's name, "" for a top-level field
	Line  int    // line in File, 0 if unknown
	Field string // the YAML / JSON field name
	Err   error  // what is wrong and what to do
}

// Error reads "scheduler: FILE:LINE: entry "NAME": FIELD: what is wrong" for
// a schedule file, and "FIELD: what is wrong" for a payload (the caller
// wraps it).
func (e *FieldError) Error() string {
	s := ""
	if e.File != "" {
		s += "scheduler: " + e.File
		if e.Line > 0 {
			s += ":" + strconv.Itoa(e.Line)
		}
		s += ": "
	}
	if e.Entry != "" {
		s += "entry " + strconv.Quote(e.Entry) + ": "
	}
	return s + e.Field + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() []error { return []error{ErrBadField, e.Err} }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

func validateTarget(tenants []string, all bool) error {
	switch {
	case all && len(tenants) > 0:
		return fieldErr("all", "give either all: true or tenants, not both")
	case !all && len(tenants) == 0:
		return fieldErr("tenants", "no tenants: list them (tenant: id, tenants: [a, b]) or set all: true")
	}
	seen := make(map[string]bool, len(tenants))
	for _, id := range tenants {
		if err := throttle.ValidateID(id); err != nil {
			return &FieldError{Field: "tenants", Err: err}
		}
		if seen[id] {
			return fieldErr("tenants", "tenant %q is listed twice", id)
		}
		seen[id] = true
	}
	return nil
}
