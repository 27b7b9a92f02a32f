package console

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/quotaq/quotaq/scheduler"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// TokenHeader is the request header that carries the page's token with an
// action (see WithActions).
const TokenHeader = "X-Quotaq-Token"

// action wraps an action's handler: it refuses when actions are off or the
// request did not come from the page, and logs what was done, to whom, by
// whom and with what outcome.
func (c *Console) action(name string, do func(ctx context.Context, id string, r *http.Request) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !c.actions {
			writeError(w, http.StatusForbidden, "actions are off: start quotaq-worker with --console-actions (console.WithActions) to turn them on")
			return
		}
		if err := c.fromPage(r); err != nil {
			c.log.Warn("console: action refused", "action", name, "remote", r.RemoteAddr, "user_agent", r.UserAgent(), "err", err)
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		id, err := tenantParam(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		msg, err := do(r.Context(), id, r)
		if err != nil {
			c.log.Warn("console: action failed", "action", name, "tenant", id, "remote", r.RemoteAddr, "user_agent", r.UserAgent(), "err", err)
			writeError(w, statusOf(err), err.Error())
			return
		}
		c.log.Info("console: action", "action", name, "tenant", id, "result", msg, "remote", r.RemoteAddr, "user_agent", r.UserAgent())
		writeJSON(w, http.StatusOK, struct {
			Message string `json:"message"`
		}{msg})
	}
}

// fromPage reports, as an error, why r cannot be an action sent by the page
// this Console served: its Origin (or Sec-Fetch-Site) must say it comes from
// this host, the host must be an IP address, localhost, this machine's name
// or an allowed one
// (so that another site's name resolved to this address does not count as
// this host), and it must carry the token.
func (c *Console) fromPage(r *http.Request) error {
	if err := c.hostAllowed(r); err != nil {
		return err
	}
	origin := r.Header.Get("Origin")
	switch {
	case origin != "":
		// the page's own host, or the name an authenticating proxy in
		// front of it serves it under (WithAllowedHosts)
		u, err := url.Parse(origin)
		if err != nil || (u.Host != r.Host && !c.hosts[strings.ToLower(u.Hostname())]) {
			return fmt.Errorf("origin %q is not this page's (%s)", origin, r.Host)
		}
	case r.Header.Get("Sec-Fetch-Site") != "same-origin":
		return errors.New("the request names no origin: send actions from the page")
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(TokenHeader)), []byte(c.token)) != 1 {
		return errors.New("the page's token is missing or stale: reload the page")
	}
	return nil
}

// release brings back the tenant's tasks parked for what just ended, as
// quotaq-enqueue does after a quota reset or a policy change.
func (c *Console) release(ctx context.Context, id, done string) (string, error) {
	n, err := worker.ReleaseParked(ctx, c.rdb, c.lim, id)
	if err != nil {
		return "", fmt.Errorf("%s, but its parked tasks still wait for their time: %w", done, err)
	}
	return fmt.Sprintf("%s; %d parked tasks brought back to run", done, n), nil
}

// resetQuota starts a new quota period for the tenant, as quotaq-enqueue
// quota reset --now does.
func (c *Console) resetQuota(ctx context.Context, id string, _ *http.Request) (string, error) {
	if err := c.lim.ResetQuota(ctx, id); err != nil {
		return "", err
	}
	return c.release(ctx, id, "quota reset for "+id)
}

// releaseHold lifts the tenant's pause and the rate learned from its
// upstream's refusals (throttle.Limiter.Unhold); its bookings, quota and
// bucket stay.
func (c *Console) releaseHold(ctx context.Context, id string, _ *http.Request) (string, error) {
	had, err := c.lim.Unhold(ctx, id)
	if err != nil {
		return "", err
	}
	if !had {
		return c.release(ctx, id, id+" had no pause or slowed rate to lift")
	}
	return c.release(ctx, id, "hold released for "+id+": it runs at its policy's rate again")
}

// policyChange is the body of a policy change: the fields given change, the
// others stay, as with quotaq-enqueue policy set.
type policyChange struct {
	Rate        *float64 `json:"rate"`
	Burst       *int64   `json:"burst"`
	Quota       *int64   `json:"quota"`
	QuotaPeriod *string  `json:"quota_period"` // a Go duration: 24h
	Concurrency *int64   `json:"concurrency"`
}

// apply overlays ch on p, as a schedule's adjust entry does
// (scheduler.Adjust.Apply), and checks the result.
func (ch policyChange) apply(p throttle.Policy) (throttle.Policy, error) {
	adj := scheduler.Adjust{Rate: ch.Rate, Burst: ch.Burst, Quota: ch.Quota, Concurrency: ch.Concurrency}
	if ch.QuotaPeriod != nil {
		d, err := time.ParseDuration(*ch.QuotaPeriod)
		if *ch.QuotaPeriod == "" || *ch.QuotaPeriod == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			return p, fmt.Errorf("%w: quota_period %q: give a duration such as 24h, or 0 (until reset)", throttle.ErrInvalidPolicy, *ch.QuotaPeriod)
		}
		adj.QuotaPeriod = &d
	}
	p = adj.Apply(p)
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%w: %w", throttle.ErrInvalidPolicy, err)
	}
	return p, nil
}

// setPolicy changes the tenant's policy, as quotaq-enqueue policy set does.
func (c *Console) setPolicy(ctx context.Context, id string, r *http.Request) (string, error) {
	var ch policyChange
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ch); err != nil {
		return "", fmt.Errorf("%w: the body is not a policy change (JSON with rate, burst, quota, quota_period, concurrency): %v", throttle.ErrInvalidPolicy, err)
	}
	// (in one step with the read: a schedule's adjustment or another
	// operator's change made meanwhile is changed, not overwritten)
	cur, p, err := c.lim.UpdatePolicy(ctx, id, ch.apply)
	if err != nil {
		return "", err
	}
	return c.release(ctx, id, fmt.Sprintf("policy of %s set to %s (was %s)", id, p, cur))
}

// hostAllowed reports, as an error, a request addressed to a host other
// than an IP address, localhost, this machine's name or an allowed one:
// another site's name made to resolve to this address (DNS rebinding) must
// not let that site's pages read the tenants or act on them.
func (c *Console) hostAllowed(r *http.Request) error {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(strings.ToLower(host), "[]")
	if net.ParseIP(host) == nil && !c.hosts[host] {
		return fmt.Errorf("host %q is not an IP address, localhost, this machine's name or one allowed by console.WithAllowedHosts: open the page at one of those", r.Host)
	}
	return nil
}
