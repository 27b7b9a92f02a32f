package enqueuecli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/cmdline"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// policyFlags are the policy fields a command may set; set records which
// were given.
type policyFlags struct {
	rate        float64
	burst       int64
	quota       int64
	quotaPeriod time.Duration
	concurrency int64
	set         map[string]bool
}

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&p.rate, "rate", 0, fmt.Sprintf("`rate` in tokens per second, %v (one per 240h) to %v; 0.5 is one every 2s", throttle.MinRate, throttle.MaxRate))
	fs.Int64Var(&p.burst, "burst", 0, "bucket capacity in `tokens`, 1 or more: how many may be taken at once after a quiet spell")
	fs.Int64Var(&p.quota, "quota", 0, "`tokens` per quota period; 0: no quota")
	fs.DurationVar(&p.quotaPeriod, "quota-period", 0, "length of a quota period, a `duration` (1h, 24h, 720h), aligned to UTC: 24h resets at 00:00 UTC, 1h on the hour; 0: the quota lasts until reset (quota reset, a schedule)")
	fs.Int64Var(&p.concurrency, "concurrency", 0, "most `tasks` in flight at once (each holds a slot while it runs); 0: no limit")
}

// collect records which policy flags fs saw and checks each on its own.
func (p *policyFlags) collect(fs *flag.FlagSet) error {
	p.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { p.set[f.Name] = true })
	switch {
	case p.set["rate"] && throttle.ValidateRate(p.rate) != nil:
		return usagef("--rate %v: give a number of tokens per second from %v (one token per 240h) to %v", p.rate, throttle.MinRate, throttle.MaxRate)
	case p.set["burst"] && p.burst < 1:
		return usagef("--burst %d: give 1 or more", p.burst)
	case p.set["quota"] && p.quota < 0:
		return usagef("--quota %d: give 0 (no quota) or more", p.quota)
	case p.set["quota-period"] && p.quotaPeriod < 0:
		return usagef("--quota-period %s: give 0 (until reset) or more", p.quotaPeriod)
	case p.set["concurrency"] && p.concurrency < 0:
		return usagef("--concurrency %d: give 0 (no limit) or more", p.concurrency)
	}
	return nil
}

func (p *policyFlags) any() bool {
	return p.set["rate"] || p.set["burst"] || p.set["quota"] || p.set["quota-period"] || p.set["concurrency"]
}

// apply overlays the flags given on base.
func (p *policyFlags) apply(base throttle.Policy) throttle.Policy {
	if p.set["rate"] {
		base.Rate = p.rate
	}
	if p.set["burst"] {
		base.Burst = p.burst
	}
	if p.set["quota"] {
		base.Quota = p.quota
		if p.quota == 0 && !p.set["quota-period"] {
			base.QuotaPeriod = 0 // no quota, no period
		}
	}
	if p.set["quota-period"] {
		base.QuotaPeriod = p.quotaPeriod
	}
	if p.set["concurrency"] {
		base.Concurrency = p.concurrency
	}
	return base
}

// policyView is a policy as printed.
type policyView struct {
	Tenant      string  `json:"tenant,omitempty"` // "" for the default policy
	Default     bool    `json:"default"`          // the tenant has no policy of its own (or this is the default)
	Rate        float64 `json:"rate"`
	Burst       int64   `json:"burst"`
	Quota       int64   `json:"quota"`
	QuotaPeriod string  `json:"quota_period"`
	Concurrency int64   `json:"concurrency"` // 0: no limit
}

func newPolicyView(tenant string, p throttle.Policy, explicit bool) policyView {
	return policyView{Tenant: tenant, Default: !explicit, Rate: p.Rate, Burst: p.Burst, Quota: p.Quota, QuotaPeriod: p.QuotaPeriod.String(),
		Concurrency: p.Concurrency}
}

func (v policyView) print(w io.Writer, asJSON bool, verb string) error {
	if asJSON {
		return json.NewEncoder(w).Encode(v)
	}
	p := throttle.Policy{Rate: v.Rate, Burst: v.Burst, Quota: v.Quota, Concurrency: v.Concurrency}
	p.QuotaPeriod, _ = time.ParseDuration(v.QuotaPeriod)
	who := "tenant " + v.Tenant
	if name, ok := throttle.UpstreamName(v.Tenant); ok {
		who = "upstream " + name
	}
	switch {
	case v.Tenant == "":
		_, err := fmt.Fprintf(w, "%sdefault policy: %s\n", verb, p)
		return err
	case v.Default:
		_, err := fmt.Fprintf(w, "%s%s: %s (the default policy; it has none of its own)\n", verb, who, p)
		return err
	}
	_, err := fmt.Fprintf(w, "%s%s: %s\n", verb, who, p)
	return err
}

const policyHelp = `Usage:
  quotaq-enqueue policy show   (TENANT | upstream:NAME | --default)
  quotaq-enqueue policy set    (TENANT | upstream:NAME | --default) [--rate R] [--burst B] [--quota Q] [--quota-period D] [--concurrency C]
  quotaq-enqueue policy delete (TENANT | upstream:NAME)

show prints a tenant's policy (its own, or the default it falls back to).
set changes the fields given and keeps the others; every worker uses the new
policy from its next decision on. delete makes the tenant use the default.
upstream:NAME is the shared limit of the upstream NAME (a task's "upstream"
header), kept apart from the tenants: no tenant id starts with "upstream:".

Units: --rate is tokens per second; --burst and --quota count tokens (a task
takes its cost in tokens, 1 unless its "cost" header says more);
--quota-period is a duration. Quota periods are aligned to UTC, counted from
1970-01-01 00:00 UTC, not from when the policy was set: a 24h quota resets at
midnight UTC, a 1h quota on the hour. For a quota that resets at local
midnight or monthly, give no --quota-period and reset it from a schedule.

Examples:
  quotaq-enqueue policy set acme --rate 5 --burst 20 --quota 10000 --quota-period 24h
  quotaq-enqueue policy set upstream:api.example.com --concurrency 10
  quotaq-enqueue policy set --default --rate 10 --burst 10
  quotaq-enqueue policy set upstream:api.example.com --rate 50 --burst 50
  quotaq-enqueue policy show acme --json
`

func runPolicy(ctx context.Context, c *common, args []string, cio cmdIO) error {
	if len(args) == 0 {
		return usagef("policy needs a subcommand: show, set or delete")
	}
	sub, args := args[0], args[1:]
	if sub == "-h" || sub == "--help" || sub == "help" {
		var def bool
		commandHelp(policyHelp, policyFlagSet("policy", &common{}, &def, &policyFlags{}))(cio.stdout)
		return flag.ErrHelp
	}
	var def bool
	var pf policyFlags
	switch sub {
	case "show", "set", "delete":
	default:
		return usagef("unknown policy subcommand %q%s (use show, set or delete)", sub, cmdline.Suggest("", sub, []string{"show", "set", "delete"}))
	}
	fs := policyFlagSet("policy "+sub, c, &def, &pf)
	pos, err := parse(fs, args, commandHelp(policyHelp, fs), cio.stdout)
	if err != nil {
		return err
	}
	if err := pf.collect(fs); err != nil {
		return err
	}
	switch {
	case sub != "set" && pf.any():
		return usagef("policy %s takes no policy fields; they are for policy set", sub)
	case sub == "delete" && def:
		return usagef("policy delete --default: the default policy cannot be deleted; change it with policy set --default")
	}
	tenant, err := oneTenant(pos, def)
	if err != nil {
		return err
	}
	if sub == "set" && !pf.any() {
		return usagef("policy set: nothing to set; give --rate, --burst, --quota or --quota-period")
	}

	conn, err := c.open(ctx, cio.stderr)
	if err != nil {
		return err
	}
	defer conn.Close()
	l := c.limiter(ctx, conn)

	switch sub {
	case "show":
		if def {
			p, err := l.DefaultPolicy(ctx)
			if err != nil {
				return err
			}
			return newPolicyView("", p, true).print(cio.stdout, c.json, "")
		}
		p, explicit, err := l.GetPolicy(ctx, tenant)
		if err != nil {
			return err
		}
		return newPolicyView(tenant, p, explicit).print(cio.stdout, c.json, "")
	case "set":
		var cur throttle.Policy
		if def {
			cur, err = l.DefaultPolicy(ctx)
		} else {
			cur, _, err = l.GetPolicy(ctx, tenant)
		}
		if err != nil {
			return err
		}
		p := pf.apply(cur)
		if err := p.Validate(); err != nil {
			return usagef("%v", err)
		}
		if def {
			if err := l.SetDefaultPolicy(ctx, p); err != nil {
				return err
			}
			if err := newPolicyView("", p, true).print(cio.stdout, c.json, "set "); err != nil {
				return err
			}
			return releaseParked(ctx, conn.Redis, l, cio, c.json)
		}
		if err := l.SetPolicy(ctx, tenant, p); err != nil {
			if errors.Is(err, throttle.ErrInvalidPolicy) {
				return usagef("%v", err)
			}
			return err
		}
		if err := newPolicyView(tenant, p, true).print(cio.stdout, c.json, "set "); err != nil {
			return err
		}
		return releaseParked(ctx, conn.Redis, l, cio, c.json, tenant)
	default: // delete
		if err := l.DeletePolicy(ctx, tenant); err != nil {
			return err
		}
		p, _, err := l.GetPolicy(ctx, tenant)
		if err != nil {
			return err
		}
		return newPolicyView(tenant, p, false).print(cio.stdout, c.json, "deleted; ")
	}
}

// policyFlagSet is the flag set of the policy commands: the common flags,
// --default and the policy fields. Each subcommand checks which of them it
// takes, so that every one has the same help.
func policyFlagSet(name string, c *common, def *bool, pf *policyFlags) *flag.FlagSet {
	fs := newFlagSet(name, c)
	fs.BoolVar(def, "default", false, "the default policy, for tenants without their own (show, set)")
	pf.register(fs)
	return fs
}

// releaseParked brings back the tasks of tenants (none: every tenant)
// parked to wait for a quota or a pause, so that they are decided again
// under the new policy, moves their booked ones to their re-spaced slots,
// and says so when there were any.
func releaseParked(ctx context.Context, rdb redis.UniversalClient, l *throttle.Limiter, cio cmdIO, quiet bool, tenants ...string) error {
	n, err := worker.ReleaseParked(ctx, rdb, l, tenants...)
	if err != nil {
		return fmt.Errorf("policy set, but the parked tasks still wait for their time: %w", err)
	}
	if n > 0 && !quiet {
		_, err = fmt.Fprintf(cio.stdout, "%d parked tasks brought back to run under the new policy\n", n)
	}
	return err
}

// oneTenant checks that exactly one valid tenant, or upstream id
// ("upstream:NAME", see throttle.Upstream), was given (none when isDefault).
func oneTenant(pos []string, isDefault bool) (string, error) {
	switch {
	case isDefault && len(pos) > 0:
		return "", usagef("give a tenant or --default, not both")
	case isDefault:
		return "", nil
	case len(pos) == 0:
		return "", usagef("give a tenant id")
	case len(pos) > 1:
		return "", usagef("give one tenant id, not %d (%q)", len(pos), pos)
	}
	if err := throttle.ValidateID(pos[0]); err != nil {
		return "", usagef("%v", err)
	}
	return pos[0], nil
}
