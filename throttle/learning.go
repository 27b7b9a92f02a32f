package throttle

import (
	"fmt"
	"math"
	"time"
)

// Learning says how a Limiter learns an upstream's limit from its refusals
// (Backoff): an upstream tighter than the policy answers 429 whenever the
// policy's rate goes out, so each refusal cuts the rate the id runs at, by
// Factor, and it climbs back linearly, by the policy's whole rate every
// Recovery, while no refusal comes: additive increase, multiplicative
// decrease, shared by every process through Redis. The policy's rate is the
// ceiling; Floor × the policy's rate the floor.
type Learning struct {
	// Factor multiplies the rate at each refusal, in (0, 1). 0 turns
	// learning off: Backoff only holds.
	Factor float64
	// Floor is the lowest rate learning goes to, as a fraction of the
	// policy's rate, in (0, 1].
	Floor float64
	// Recovery is how long the rate takes to climb back by the policy's
	// whole rate (from a cut to half the policy's rate: Recovery/2).
	Recovery time.Duration
}

// DefaultLearning is the learning of a Limiter without WithLearning: cut to
// 90 % at each refusal, never below a tenth of the policy's rate, climb
// back by the whole rate in a minute. Measured behind an upstream at half
// a 20/s policy (BENCHMARKS.md): 91 % of the upstream's rate achieved, 1.2 %
// of the calls refused.
var DefaultLearning = Learning{Factor: 0.9, Floor: 0.1, Recovery: time.Minute}

// NoLearning turns learning off (WithLearning(NoLearning)): Backoff only
// holds, and the policy's rate goes out again after each hold.
var NoLearning = Learning{}

// learnCooldown is the shortest time between two cuts of one id: the calls
// already on their way when the upstream said stop are refused too, and cut
// once in all.
const learnCooldown = time.Second

// Validate reports whether lr is usable, naming the bad field.
func (lr Learning) Validate() error {
	switch {
	case lr.Factor == 0:
		return nil // off
	case !(lr.Factor > 0 && lr.Factor < 1):
		return fmt.Errorf("%w: learning factor %v must be between 0 and 1 exclusive (0.8 cuts the rate by a fifth at each refusal; 0 turns learning off)", ErrInvalidPolicy, lr.Factor)
	case !(lr.Floor > 0 && lr.Floor <= 1) || math.IsNaN(lr.Floor):
		return fmt.Errorf("%w: learning floor %v must be above 0 and at most 1 (a fraction of the policy's rate)", ErrInvalidPolicy, lr.Floor)
	case lr.Recovery < time.Second:
		return fmt.Errorf("%w: learning recovery %s must be at least 1s", ErrInvalidPolicy, lr.Recovery)
	}
	return nil
}

// WithLearning sets how the Limiter learns an upstream's limit from its
// refusals (Backoff). Default DefaultLearning; NoLearning turns it off. An
// invalid Learning is reported by Limiter.Err, like an invalid default
// policy, and every decision refuses with ErrInvalidPolicy.
func WithLearning(lr Learning) Option {
	return func(l *Limiter) { l.learn = lr }
}
