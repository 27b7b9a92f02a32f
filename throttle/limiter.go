package throttle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter decides per tenant whether tokens may be spent, on Redis. It is
// safe for concurrent use; the zero value is not usable, call New.
type Limiter struct {
	rdb        redis.UniversalClient
	prefix     string
	fallback   Policy
	failOpen   bool
	algo       *algorithm
	refresh    time.Duration
	quotaRetry time.Duration
	learn      Learning
	breaker    time.Duration // WithBreaker
	openUntil  atomic.Int64  // unix ns until which decisions skip Redis; 0: closed

	def        atomic.Pointer[cachedPolicy]
	refreshing sync.Mutex

	local       *local      // WithLeases, WithRefusalCache; nil: off
	batch       *batcher    // WithBatching; nil: off
	noFunctions atomic.Bool // decisions run as a script, not a Redis function (function.go)

	err error // an option New could not use; see Err
}

type cachedPolicy struct {
	p    Policy
	next int64 // default quota reset, Unix µs; 0: unknown
	read time.Time
}

// New returns a Limiter on rdb, which may be a single node, a Sentinel
// failover client or a Cluster client. Defaults: prefix "quotaq", default
// policy PerSecond(10), fail closed, TokenBucket.
//
// An option that cannot be used, such as an invalid WithDefaultPolicy, is
// reported by Err, and every decision of the Limiter fails with that error
// (ErrInvalidPolicy), refusing, whatever WithFailOpen says: check Err once
// after New.
func New(rdb redis.UniversalClient, opts ...Option) *Limiter {
	l := &Limiter{
		rdb:        rdb,
		prefix:     "quotaq",
		fallback:   PerSecond(10),
		algo:       TokenBucket.script(),
		refresh:    time.Second,
		quotaRetry: time.Minute,
		learn:      DefaultLearning,
		breaker:    DefaultBreaker,
	}
	for _, o := range opts {
		o(l)
	}
	if err := l.fallback.Validate(); err != nil {
		l.err = fmt.Errorf("WithDefaultPolicy(%v): %w", l.fallback, err)
	} else if err := l.learn.Validate(); err != nil {
		l.err = fmt.Errorf("WithLearning: %w", err)
	}
	return l
}

// Err reports an option given to New that cannot be used (an invalid
// WithDefaultPolicy), or nil. A Limiter with an error refuses every
// decision with it: it is a mistake in the program's configuration, not an
// outage, so it is never ErrUnavailable and never fails open.
func (l *Limiter) Err() error { return l.err }

// Prefix returns the prefix of the Limiter's keys.
func (l *Limiter) Prefix() string { return l.prefix }

// Allow is shorthand for AllowN(ctx, tenant, 1).
func (l *Limiter) Allow(ctx context.Context, tenant string) (Result, error) {
	return l.AllowN(ctx, tenant, 1)
}

// AllowN reports whether tenant may spend n tokens now, and spends them if
// so. A refused call consumes nothing. With n = 0 it consumes nothing and
// reports the state (a peek, as in go-redis/redis_rate): Allowed is false
// only when the tenant is paused, its bucket is booked into the future, or
// its quota is overspent.
func (l *Limiter) AllowN(ctx context.Context, tenant string, n int64) (Result, error) {
	return l.AllowMulti(ctx, n, tenant)
}

// AllowMulti is AllowN over several ids at once, such as a tenant and the
// upstream API all tenants share (Upstream("api.example")): the n tokens are spent from every id's
// bucket (and quota) or from none. On Redis Cluster the ids must hash to one
// slot; see the README.
func (l *Limiter) AllowMulti(ctx context.Context, n int64, ids ...string) (Result, error) {
	return l.AllowRequest(ctx, Request{IDs: ids, N: n})
}

// AllowRequest is AllowMulti with the rest of a Request: req.Slot names the
// call among those in flight, so that an id with a concurrency limit admits
// it only with a free slot (see Request.Slot), as an HTTP server does for
// its requests. MaxWait, Ticket and KeepTicket are for Reserve: they are
// ignored here.
func (l *Limiter) AllowRequest(ctx context.Context, req Request) (Result, error) {
	ids, n := req.IDs, req.N
	req = Request{IDs: ids, N: n, Slot: req.Slot, SlotTTL: req.SlotTTL}
	if !l.local.refusals() || n <= 0 || len(ids) == 0 {
		d, err := l.run(ctx, modeAllow, req)
		return d.Result, err
	}
	for i := 0; len(ids) > 1 && i < len(ids); i++ {
		// a refusal known of one id must not hide another that is bad (a
		// bad id alone is never refused here: run reports it)
		if err := ValidateID(ids[i]); err != nil {
			return Result{}, err
		}
	}
	r, answered, a := l.local.ask(ctx, ids, n, modeAllow, false)
	if answered {
		return r, nil
	}
	defer a.done()
	req.asking = a
	d, err := l.run(ctx, modeAllow, req)
	if err == nil {
		a.answered(d.Result)
	}
	return d.Result, err
}

// Peek reports what AllowN(ctx, tenant, 1) would answer, consuming nothing.
func (l *Limiter) Peek(ctx context.Context, tenant string) (Result, error) {
	d, err := l.run(ctx, modePeek, Request{IDs: []string{tenant}, N: 1})
	return d.Result, err
}

// ReserveN books n tokens of tenant's bucket, now or when they will be
// there, and reports how long until they are due. The caller is expected to
// act after Reservation.Delay, without asking again. Nothing is booked when
// the delay would be longer than maxWait (maxWait <= 0: no cap).
//
// Only TokenBucket books future tokens; with the other algorithms a delayed
// reservation is not OK and its Delay says when to ask again. With n = 0
// nothing is booked: the Reservation reports the state, as AllowN(ctx,
// tenant, 0) does.
func (l *Limiter) ReserveN(ctx context.Context, tenant string, n int64, maxWait time.Duration) (Reservation, error) {
	return l.Reserve(ctx, Request{IDs: []string{tenant}, N: n, MaxWait: maxWait})
}

// ReserveMulti is ReserveN over several ids at once (a tenant, then shared
// levels such as an upstream API): the tokens are booked in every id's
// bucket, due when the last of them has them, or in none.
func (l *Limiter) ReserveMulti(ctx context.Context, n int64, maxWait time.Duration, ids ...string) (Reservation, error) {
	return l.Reserve(ctx, Request{IDs: ids, N: n, MaxWait: maxWait})
}

// Request is a general decision for Reserve.
type Request struct {
	// IDs are the ids to decide on, all or nothing: a tenant, then shared
	// levels such as an upstream API, named by Upstream(name). At least one.
	IDs []string
	// N is the cost in tokens. 0 books nothing and reports the state (a
	// peek; see AllowN); CancelTicket treats 0 as 1.
	N int64
	// MaxWait caps how far ahead tokens are booked; 0: no cap.
	MaxWait time.Duration
	// Ticket names a booking, e.g. the id of the job it is for. A delayed
	// reservation records it; when the job comes back it asks again with the
	// same ticket and is admitted once its tokens are due, without
	// consuming a second time. Empty: no ticket.
	Ticket string
	// KeepTicket makes Reserve record the ticket even when the tokens are
	// granted now: for a job enqueued now to run later (shaping at enqueue
	// time), which redeems them when it comes instead of paying again.
	KeepTicket bool
	// Slot names the call among those in flight, e.g. the id of the job it
	// runs. On an id whose policy has a Concurrency limit, a decision that
	// admits the call now also gives it a slot, held for SlotTTL unless
	// renewed (RenewSlot) and until released (ReleaseSlot); with no slot
	// free it refuses with ReasonConcurrency. Empty: the call is not
	// counted in flight (Concurrency does not limit it).
	Slot string
	// SlotTTL is how long a slot is held without RenewSlot: a caller that
	// dies frees its slots after it. 0: DefaultSlotTTL.
	SlotTTL time.Duration

	noLease bool    // runSplit: one id of several, which must not lease
	asking  *asking // AllowMulti: the local state was asked, Redis is asked
}

// Reserve books req.N tokens of every id in req.IDs; see ReserveN and
// Request.Ticket.
func (l *Limiter) Reserve(ctx context.Context, req Request) (Reservation, error) {
	d, err := l.run(ctx, modeReserve, req)
	if err != nil {
		return Reservation{OK: d.Result.Allowed, Result: d.Result}, err
	}
	res := Reservation{OK: d.Result.Allowed || d.booked, Delay: d.Result.RetryAfter, Booked: d.before, Result: d.Result}
	if res.Delay < 0 {
		res.Delay = 0
	}
	return res, nil
}

// CancelN gives back n tokens of tenant's bucket and quota, such as a
// reservation that will not be used. Giving back more than was taken leaves
// a full bucket. It cannot tell whose tokens they were: with SlidingWindow it
// takes out the n oldest entries of the window (never letting more in than
// taking out the caller's own would). Prefer CancelTicket for bookings.
// n = 0 gives back nothing.
func (l *Limiter) CancelN(ctx context.Context, tenant string, n int64) error {
	if n == 0 {
		if err := ValidateID(tenant); err != nil {
			return err
		}
		return nil
	}
	defer l.local.forget(tenant)
	_, err := l.run(ctx, modeCancel, Request{IDs: []string{tenant}, N: n})
	return err
}

// CancelTicket gives back the tokens booked under req.Ticket (see
// Request.Ticket) on each of req.IDs, once: nothing on an id where the
// ticket was never booked, or was redeemed or cancelled already. req.N must
// be the cost it was booked with. As x/time/rate's Reservation.CancelAt, it
// gives back only what later bookings do not rely on: with TokenBucket, the
// n tokens less the time from their due time to the last booking's due time
// (or to now, when later), so tokens booked after this ticket keep their
// spacing. An id that admitted at once while another id booked (across
// Cluster slots) holds its ticket as already due: it gets nothing back.
func (l *Limiter) CancelTicket(ctx context.Context, req Request) error {
	if req.Ticket == "" {
		return fmt.Errorf("throttle: CancelTicket needs a ticket")
	}
	defer l.local.forget(req.IDs...)
	_, err := l.run(ctx, modeCancel, req)
	return err
}

// Hold pauses tenant for d: its bucket counts as empty until d has passed,
// so its decisions wait, and tokens booked from now on are due after the
// pause, one interval apart. It also counts the hold (HoldCount). d is cut
// to MaxHold. When the tenant's upstream refused a call, use Backoff, which
// also slows the tenant down.
func (l *Limiter) Hold(ctx context.Context, tenant string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("throttle: hold %s of tenant %q must be above 0", d, tenant)
	}
	return l.hold(ctx, tenant, d, false)
}

// Backoff tells the limiter that id's upstream refused a call (429 or 503),
// asking to wait d (its Retry-After; 0 when it gave none): id is held for d
// as with Hold, and runs from now on at a rate learned from the upstream
// (see WithLearning): cut now, climbing back to its policy's rate while no
// other refusal comes. Calls of id already on their way when the upstream
// said stop cut the rate once, not once each.
func (l *Limiter) Backoff(ctx context.Context, id string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("throttle: backoff %s of %q must not be negative", d, id)
	}
	if err := l.learn.Validate(); err != nil {
		return err
	}
	return l.hold(ctx, id, d, l.learn.Factor > 0)
}

func (l *Limiter) hold(ctx context.Context, tenant string, d time.Duration, cut bool) error {
	if err := ValidateID(tenant); err != nil {
		return err
	}
	d = min(d, MaxHold)
	defer l.local.forget(tenant) // ends this Limiter's lease (refusals can only get longer)
	k := l.keysFor(tenant)
	us := (d + time.Microsecond - 1) / time.Microsecond
	books := 0
	if l.algo.books {
		books = 1
	}
	factor := 0.0
	if cut {
		factor = l.learn.Factor
	}
	def, err := l.defaults(ctx)
	if errors.Is(err, ErrInvalidPolicy) {
		return fmt.Errorf("throttle: hold %q: %w", tenant, err) // not an outage
	}
	if err != nil {
		return fmt.Errorf("%w: hold %q: %w", ErrUnavailable, tenant, err)
	}
	err = holdScript.Run(ctx, l.rdb, []string{k.tb, k.aux, k.holds, k.policy}, int64(us), books,
		def.p.args()[0], factor, l.learn.Floor, l.learn.Recovery.Microseconds(), learnCooldown.Microseconds()).Err()
	if err != nil {
		return fmt.Errorf("%w: hold %q: %w", ErrUnavailable, tenant, err)
	}
	return nil
}

// Unhold lifts id's pause now (Hold, Backoff) and forgets the rate it
// learned from its upstream's refusals, so that it runs at its policy's
// rate again; its bookings keep their due times. It reports whether there
// was a pause in force or a learned rate. The hold count stays. A worker's
// parked tasks of id come back with worker.ReleaseParked.
func (l *Limiter) Unhold(ctx context.Context, id string) (bool, error) {
	if err := ValidateID(id); err != nil {
		return false, err
	}
	defer l.local.forget(id)
	k := l.keysFor(id)
	had, err := unholdScript.Run(ctx, l.rdb, []string{k.tb, k.aux}).Int64()
	if err != nil {
		return false, fmt.Errorf("%w: unhold %q: %w", ErrUnavailable, id, err)
	}
	return had == 1, nil
}

// MaxHold is the longest pause Hold applies: a longer one (an upstream's
// "Retry-After: 99999999999") is cut to it.
const MaxHold = 30 * 24 * time.Hour

// HoldCount returns how many times tenant has been held.
func (l *Limiter) HoldCount(ctx context.Context, tenant string) (int64, error) {
	if err := ValidateID(tenant); err != nil {
		return 0, err
	}
	n, err := l.rdb.Get(ctx, l.keysFor(tenant).holds).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: hold count of tenant %q: %w", ErrUnavailable, tenant, err)
	}
	return n, nil
}

// run makes one decision: validate req, answer it locally from a lease if
// it can, else run decide.lua and read its reply.
func (l *Limiter) run(ctx context.Context, mode mode, req Request) (decision, error) {
	mode, n, err := l.validate(mode, req)
	if err != nil {
		return decision{}, err
	}
	if l.err != nil {
		return l.misconfigured(req, l.err)
	}
	if l.breakerOpen() {
		return l.failed(req, errBreakerOpen)
	}
	def, err := l.defaults(ctx)
	if errors.Is(err, ErrInvalidPolicy) {
		return l.misconfigured(req, err)
	}
	if err != nil {
		return l.failed(req, err)
	}

	// local: a lease of the tenant's tokens (AllowMulti has looked for a
	// known refusal)
	var want, settle, unspent, at int64
	var ttl time.Duration
	a := req.asking
	// (a lease is granted only for an id without a concurrency limit, so a
	// call spent from one needs no slot, whatever Request.Slot says)
	leases := l.local.leases() && !req.noLease && len(req.IDs) == 1 && l.algo.books &&
		(mode == modeAllow || mode == modeReserve)
	if leases {
		if a == nil {
			// spent from the lease, or from the one a decision asking
			// Redis for this tenant brings
			r, answered, asked := l.local.ask(ctx, req.IDs, n, mode, req.KeepTicket)
			if answered {
				return decision{Result: r}, nil
			}
			defer asked.done()
			a = asked
		}
		want, settle, unspent, at = a.lease()
		ttl = l.local.ttl
	}

	// the script
	var keep int64
	if req.KeepTicket {
		keep = 1
	}
	var slotTTL int64
	if req.Slot != "" {
		slotTTL = req.slotTTL().Microseconds()
	}
	nums := []int64{int64(len(req.IDs)), n, req.MaxWait.Microseconds(), keep, want, settle, unspent, at, slotTTL}
	if slices.IndexFunc(nums[2:], func(x int64) bool { return x != 0 }) < 0 {
		nums = nums[:2] // (the rest are 0: see decide.lua)
	}
	c := &batchCall{
		keys:   l.decisionKeys(req.IDs),
		shared: l.settings(def, ttl),
		own:    []any{string(mode), req.Ticket, req.Slot, record(nums...)},
	}
	v, err := l.decide(ctx, c)
	var rerr redis.Error
	switch {
	case err != nil && len(req.IDs) > 1 && strings.Contains(err.Error(), "CROSSSLOT"):
		return l.runSplit(ctx, mode, req)
	case err != nil && errors.As(err, &rerr) && strings.Contains(err.Error(), "not one quotaq writes"):
		// the script failed on what it read: not an outage
		return decision{}, fmt.Errorf("throttle: a state of %q is not one quotaq writes (%w); Reset the tenant", req.IDs, err)
	case err != nil:
		return l.failed(req, err)
	}
	l.reached()

	// the reply
	r, err := decodeReply(v)
	if err != nil {
		return decision{}, err
	}
	if leases && r.leased > 0 {
		a.granted(r.leased, r.leasedAt)
		r.remaining += r.leased
	}
	return l.decision(r, req.IDs)
}

// validate checks req and returns the mode and cost to decide with.
func (l *Limiter) validate(m mode, req Request) (mode, int64, error) {
	n := req.N
	switch {
	case n < 0:
		return m, 0, fmt.Errorf("%w: n=%d must be 0 (a peek) or more", ErrInvalidCost, n)
	case n == 0 && m == modeCancel:
		n = 1 // CancelTicket: the ticket's booking (CancelN(0) returns before)
	case n == 0:
		m = modePeek // nothing to consume: report the state
	}
	if len(req.IDs) == 0 {
		return m, 0, fmt.Errorf("%w: no tenant given", ErrInvalidTenant)
	}
	for _, id := range req.IDs {
		if err := ValidateID(id); err != nil {
			return m, 0, err
		}
	}
	return m, n, nil
}

// settings returns decide.lua's first argument: the default policy, when
// quotas without a period reset, how long a lease lasts (0: none) and the
// learning's recovery, as one record.
func (l *Limiter) settings(def *cachedPolicy, ttl time.Duration) string {
	p := def.p
	return record(p.interval(), p.Burst, p.Quota, p.QuotaPeriod.Microseconds(), p.Concurrency,
		def.next, ttl.Microseconds(), l.learn.Recovery.Microseconds())
}

// decisionKeys returns decide.lua's keys for ids, five each.
func (l *Limiter) decisionKeys(ids []string) []string {
	ks := make([]string, 0, 5*len(ids))
	for _, id := range ids {
		k := l.keysFor(id)
		ks = append(ks, k.policy, k.state, k.quota, k.aux, k.slots)
	}
	return ks
}

// runSplit decides on ids that live in different Redis Cluster slots, where
// one script cannot see them all: one id at a time, giving back what the
// earlier ids took when a later one refuses. It never admits more than the
// atomic decision would; while it runs, the tokens it may give back again are
// unavailable to others, so it can briefly admit less.
func (l *Limiter) runSplit(ctx context.Context, mode mode, req Request) (decision, error) {
	var worst decision
	var now []string      // ids admitted at once, while a later id may book
	var ticketed []string // ids that recorded req.Ticket (CancelTicket gives back only those)
	booked := false
	for i, id := range req.IDs {
		one := req
		one.IDs, one.noLease, one.asking = []string{id}, true, nil
		d, err := l.run(ctx, mode, one)
		if err == nil && (i == 0 || d.RetryAfter > worst.RetryAfter || (worst.Allowed && !d.Allowed)) {
			worst = d
		}
		if mode == modePeek || mode == modeCancel {
			if err != nil {
				return d, err
			}
			continue
		}
		if err != nil || !(d.Allowed || d.booked) {
			for _, prev := range req.IDs[:i] {
				undo := req
				undo.IDs = []string{prev}
				if !slices.Contains(ticketed, prev) {
					undo.Ticket = "" // it holds no ticket: give back its n plainly
				}
				if _, uerr := l.run(ctx, modeCancel, undo); uerr != nil && err == nil {
					err = uerr
				}
				if req.Slot != "" { // and the slot it took, if it has a limit
					if _, uerr := l.ReleaseSlot(ctx, req.Slot, prev); uerr != nil && err == nil {
						err = uerr
					}
				}
			}
			if err != nil {
				return d, err
			}
			return d, nil
		}
		if d.booked {
			booked = true
		} else {
			now = append(now, id)
		}
		if req.Ticket != "" && (d.booked || req.KeepTicket) {
			ticketed = append(ticketed, id)
		}
	}
	if booked && req.Ticket != "" && len(now) > 0 {
		// the ids that admitted at once hold the ticket too, already due, so
		// the redeeming call charges none of them again
		if err := l.recordTicket(ctx, req.Ticket, worst.RetryAfter+time.Hour, now); err != nil {
			return worst, err
		}
	}
	return worst, nil
}

// recordTicket marks ticket as booked and already due on each id, kept at
// least for ttl.
func (l *Limiter) recordTicket(ctx context.Context, ticket string, ttl time.Duration, ids []string) error {
	for _, id := range ids {
		k := l.keysFor(id)
		if err := ticketScript.Run(ctx, l.rdb, []string{k.tb, k.aux}, ticket, ttl.Milliseconds()).Err(); err != nil {
			return fmt.Errorf("%w: record ticket %q: %w", ErrUnavailable, ticket, err)
		}
	}
	return nil
}

// failed is the answer when Redis could not be asked: the fail-open setting
// decides, and the error goes back to the caller.
func (l *Limiter) failed(req Request, err error) (decision, error) {
	l.trip(err)
	d := decision{Result: Result{Allowed: l.failOpen, QuotaRemaining: -1, Tenant: req.IDs[0]}}
	how := "open: admitted"
	if !l.failOpen {
		d.Reason = ReasonRate
		how = "closed: refused"
	}
	return d, fmt.Errorf("%w (failing %s): %w", ErrUnavailable, how, err)
}

// misconfigured is the answer when the policy to decide with is invalid:
// refused, whatever the fail-open setting, since Redis is not at fault.
func (l *Limiter) misconfigured(req Request, err error) (decision, error) {
	return decision{Result: Result{RetryAfter: -1, QuotaRemaining: -1, Tenant: req.IDs[0], Reason: ReasonRate}}, err
}

// TicketDues returns when the tokens booked under each of tickets on id are
// due (the zero time for a ticket id does not hold): after Backoff or Hold
// moved them, a caller that parked its jobs at their due times moves them
// there too.
func (l *Limiter) TicketDues(ctx context.Context, id string, tickets ...string) ([]time.Time, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	out := make([]time.Time, len(tickets))
	if len(tickets) == 0 {
		return out, nil
	}
	fields := make([]string, len(tickets))
	for i, t := range tickets {
		fields[i] = "k:" + t
	}
	v, err := l.rdb.HMGet(ctx, l.keysFor(id).aux, fields...).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: ticket due times of %q: %w", ErrUnavailable, id, err)
	}
	for i, x := range v {
		s, _ := x.(string)
		us, err := strconv.ParseInt(s, 10, 64)
		if err != nil || us == 0 {
			continue
		}
		if us < 0 { // a ticket that holds its start too: -due
			us = -us
		}
		out[i] = time.UnixMicro(us)
	}
	return out, nil
}
