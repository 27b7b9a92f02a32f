package throttle

import "errors"

var (
	// ErrInvalidTenant is returned for a tenant id (or an upstream id, see
	// Upstream) that is empty, longer
	// than MaxTenantLen bytes, or holds control characters.
	ErrInvalidTenant = errors.New("throttle: invalid tenant id")

	// ErrInvalidPolicy is returned for a policy that cannot be enforced,
	// and by every decision of a Limiter whose default policy is invalid
	// (Limiter.Err): a configuration error, never failed open.
	ErrInvalidPolicy = errors.New("throttle: invalid policy")

	// ErrInvalidCost is returned for a cost n below 0 (0 is a peek).
	ErrInvalidCost = errors.New("throttle: invalid cost")

	// ErrUnavailable wraps the error of a decision that could not reach
	// Redis. The Result then says what the fail-open setting chose.
	ErrUnavailable = errors.New("throttle: redis unavailable")
)
