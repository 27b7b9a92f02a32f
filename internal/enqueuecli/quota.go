package enqueuecli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/asynqrequeue"
	"github.com/quotaq/quotaq/internal/cmdline"
	"github.com/quotaq/quotaq/scheduler"
)

const quotaHelp = `Usage:
  quotaq-enqueue quota reset  (TENANT... | --all) [--queue Q] [--now]
  quotaq-enqueue quota adjust (TENANT... | --all) [--rate R] [--burst B] [--quota Q] [--quota-period D] [--queue Q]

reset starts a new quota period; adjust changes the listed policy fields.
Both enqueue the very tasks the scheduler's cron entries enqueue
(quotaq:quota:reset, quotaq:quota:adjust), so a worker that registered the
scheduler's handlers applies them, in order with the scheduled ones. With
--now, reset is applied directly instead, without a worker. (To change one
tenant's policy directly, use "policy set".)

Units are those of "policy set": --rate in tokens per second, --burst and
--quota in tokens, --quota-period a duration; periods are aligned to UTC
(a 24h quota resets at 00:00 UTC). See quotaq-enqueue policy --help.

Examples:
  quotaq-enqueue quota reset acme beta
  quotaq-enqueue quota reset --all --now
  quotaq-enqueue quota adjust --all --quota 50000
`

func runQuota(ctx context.Context, c *common, args []string, cio cmdIO) error {
	if len(args) == 0 {
		return usagef("quota needs a subcommand: reset or adjust")
	}
	sub, args := args[0], args[1:]
	var (
		all, now bool
		queue    string
		pf       policyFlags
	)
	if sub == "-h" || sub == "--help" || sub == "help" {
		commandHelp(quotaHelp, quotaFlagSet("quota", &common{}, &all, &now, &queue, &pf))(cio.stdout)
		return flag.ErrHelp
	}
	if sub != "reset" && sub != "adjust" {
		return usagef("unknown quota subcommand %q%s (use reset or adjust)", sub, cmdline.Suggest("", sub, []string{"reset", "adjust"}))
	}
	fs := quotaFlagSet("quota "+sub, c, &all, &now, &queue, &pf)
	pos, err := parse(fs, args, commandHelp(quotaHelp, fs), cio.stdout)
	if err != nil {
		return err
	}
	if err := pf.collect(fs); err != nil {
		return err
	}
	switch {
	case sub == "reset" && pf.any():
		return usagef("quota reset takes no policy fields; they are for quota adjust")
	case sub == "adjust" && now:
		return usagef("quota adjust has no --now; to change a policy directly, use policy set")
	case all && len(pos) > 0:
		return usagef("give tenants or --all, not both")
	case !all && len(pos) == 0:
		return usagef("give the tenants to %s, or --all", sub)
	case strings.TrimSpace(queue) == "":
		return usagef("--queue is empty")
	}
	for _, t := range pos {
		if _, err := oneTenant([]string{t}, false); err != nil {
			return err
		}
	}

	var task *asynq.Task
	if !now {
		if sub == "reset" {
			task, err = scheduler.NewResetTask(scheduler.Reset{Tenants: pos, All: all}, asynq.Queue(queue))
		} else {
			if !pf.any() {
				return usagef("quota adjust: nothing to change; give --rate, --burst, --quota or --quota-period")
			}
			a := scheduler.Adjust{Tenants: pos, All: all}
			if pf.set["rate"] {
				a.Rate = &pf.rate
			}
			if pf.set["burst"] {
				a.Burst = &pf.burst
			}
			if pf.set["quota"] {
				a.Quota = &pf.quota
			}
			if pf.set["quota-period"] {
				a.QuotaPeriod = &pf.quotaPeriod
			}
			task, err = scheduler.NewAdjustTask(a, asynq.Queue(queue))
		}
		if err != nil {
			return usagef("%v", err)
		}
	}

	conn, err := c.open(ctx, cio.stderr)
	if err != nil {
		return err
	}
	defer conn.Close()
	who := "tenants " + strings.Join(pos, ", ")
	if len(pos) == 1 {
		who = "tenant " + pos[0]
	}
	if all {
		who = "every tenant"
	}

	if now {
		l := c.limiter(ctx, conn)
		n := len(pos)
		if all {
			if n, err = l.ResetAllQuotas(ctx); err != nil {
				return err
			}
		} else if err := l.ResetQuota(ctx, pos...); err != nil {
			return err
		}
		// the tasks parked until the quota's end run now, spread by the bucket
		released, err := asynqrequeue.New(conn.Redis).Release(ctx, pos...)
		if err != nil {
			return fmt.Errorf("quota reset now for %s, but its parked tasks still wait for their time: %w", who, err)
		}
		if c.json {
			return json.NewEncoder(cio.stdout).Encode(struct {
				Action   string   `json:"action"`
				All      bool     `json:"all"`
				Tenant   []string `json:"tenants"`
				Reset    int      `json:"reset"`
				Released int      `json:"released"`
			}{"reset", all, nonNil(pos), n, released})
		}
		_, err = fmt.Fprintf(cio.stdout, "quota reset now for %s (%d reset); %d parked tasks brought back to run\n", who, n, released)
		return err
	}

	client := asynq.NewClientFromRedisClient(conn.Redis)
	defer client.Close()
	info, err := client.EnqueueContext(ctx, task)
	if err != nil {
		return fmt.Errorf("enqueue %s into Redis at %s: %w", task.Type(), conn.Addr, err)
	}
	if c.json {
		return json.NewEncoder(cio.stdout).Encode(struct {
			Action  string          `json:"action"`
			Type    string          `json:"type"`
			ID      string          `json:"id"`
			Queue   string          `json:"queue"`
			Payload json.RawMessage `json:"payload"`
		}{sub, info.Type, info.ID, info.Queue, info.Payload})
	}
	_, err = fmt.Fprintf(cio.stdout, "enqueued quota %s for %s: task %s (%s) in queue %s; a worker running the scheduler's handlers applies it\n",
		sub, who, info.ID, info.Type, info.Queue)
	return err
}

// quotaFlagSet is the flag set of the quota commands; each subcommand checks
// which flags it takes, so that both have the same help.
func quotaFlagSet(name string, c *common, all, now *bool, queue *string, pf *policyFlags) *flag.FlagSet {
	fs := newFlagSet(name, c)
	fs.BoolVar(all, "all", false, "every tenant")
	fs.StringVar(queue, "queue", "default", "asynq `queue` the task goes to (the one the worker's scheduler handlers listen on)")
	fs.BoolVar(now, "now", false, "reset: reset directly, not through a task (no worker needed)")
	pf.register(fs)
	return fs
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
