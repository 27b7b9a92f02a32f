package throttle

import (
	"context"
	"fmt"
	"time"
)

// DefaultSlotTTL is how long a slot (Request.Slot) is held without
// RenewSlot when Request.SlotTTL is 0.
const DefaultSlotTTL = 15 * time.Second

func (r Request) slotTTL() time.Duration {
	if r.SlotTTL > 0 {
		return r.SlotTTL
	}
	return DefaultSlotTTL
}

// RenewSlot keeps the slot held under slot on each of ids for ttl from now
// (0: DefaultSlotTTL), for a call that is still running, and returns the
// ids it still held one on (an id without a concurrency limit holds none).
// A slot that ran out before it was renewed may have gone to another call:
// the caller is then over the limit until it returns.
func (l *Limiter) RenewSlot(ctx context.Context, slot string, ttl time.Duration, ids ...string) ([]string, error) {
	if ttl <= 0 {
		ttl = DefaultSlotTTL
	}
	return l.eachSlot(ctx, "renew", slot, ttl, ids)
}

// ReleaseSlot frees the slot held under slot on each of ids, when the call
// has returned, so that a call waiting for it may start, and returns the
// ids it held one on (those with a concurrency limit, where its slot had
// not run out).
func (l *Limiter) ReleaseSlot(ctx context.Context, slot string, ids ...string) ([]string, error) {
	return l.eachSlot(ctx, "release", slot, 0, ids)
}

// eachSlot runs op on slot on each of ids, one at a time (on a Cluster they
// may live in different slots), and returns the ids it held one on.
func (l *Limiter) eachSlot(ctx context.Context, op, slot string, ttl time.Duration, ids []string) ([]string, error) {
	var held []string
	for _, id := range ids {
		n, err := l.slots(ctx, op, slot, ttl, []string{id})
		if err != nil {
			return held, err
		}
		if n > 0 {
			held = append(held, id)
		}
	}
	return held, nil
}

// InFlight returns how many calls hold one of id's slots now (0 for an id
// without a concurrency limit).
func (l *Limiter) InFlight(ctx context.Context, id string) (int64, error) {
	n, err := l.slots(ctx, "count", "-", 0, []string{id})
	return int64(n), err
}

func (l *Limiter) slots(ctx context.Context, op, slot string, ttl time.Duration, ids []string) (int, error) {
	if slot == "" {
		return 0, fmt.Errorf("throttle: %s a slot: no slot name given", op)
	}
	if len(ids) == 0 {
		return 0, fmt.Errorf("%w: no tenant given", ErrInvalidTenant)
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		if err := ValidateID(id); err != nil {
			return 0, err
		}
		keys[i] = l.keysFor(id).slots
	}
	held := 0
	// one id at a time: on a Cluster the ids may live in different slots
	for _, k := range keys {
		n, err := slotsScript.Run(ctx, l.rdb, []string{k}, op, slot, ttl.Microseconds()).Int()
		if err != nil {
			return held, fmt.Errorf("%w: %s slot %q: %w", ErrUnavailable, op, slot, err)
		}
		held += n
	}
	return held, nil
}
