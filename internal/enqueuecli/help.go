package enqueuecli

import (
	"flag"
	"fmt"
	"io"

	"github.com/quotaq/quotaq/internal/cmdline"
)

const helpText = `quotaq-enqueue enqueues tenants' tasks into asynq and administers their limits.

Usage:
  quotaq-enqueue --tenant ID --type TYPE [--payload JSON] [--count N] [task flags]
  quotaq-enqueue --file tasks.ndjson|- [task flags as defaults]
  quotaq-enqueue policy show|set|delete ...     a tenant's policy (or --default)
  quotaq-enqueue standing TENANT                one tenant: tokens, quota, tasks
  quotaq-enqueue status [TENANT...]             every tenant, one line each
  quotaq-enqueue quota reset|adjust ...         through the scheduler's tasks
  quotaq-enqueue unhold TENANT...               lift a pause (429) and a slowed rate now
  quotaq-enqueue COMMAND --help                 a command's own help
  quotaq-enqueue --version

The tenant goes into the task's "tenant" header, which the quotaq worker reads,
and the time it is ready to run into "ready_at" (for the worker's metrics);
the payload is stored exactly as given. With --file, each line is one JSON
object; its keys are the task flags' names (tenant, type, payload, queue, in,
at, max_retry, timeout, deadline, unique, retention, id, headers, shape, cost)
and the flags give the defaults for keys a line leaves out. Every line is
checked before anything is enqueued: a bad line stops the run with its line
number.

Cost (--cost N, a line's "cost": N): how many tokens, and quota units, the
task takes; it goes into the task's "cost" header, which the worker charges
(1 without). N is a whole number of 1 or more. A task that costs more than
the burst or the quota of its tenant (or of its upstream) could never run:
the run is refused before anything is enqueued (exit 2).

Shaping (--shape): use it for a backlog far beyond a tenant's rate. Enqueued
plainly, such a backlog fills the queue: the worker dequeues each task twice
(once to refuse it and book its slot, once to run it), and other tenants'
tasks in the same queue wait behind all of it. With --shape, each task's
tokens are booked with the tenant's limiter as it is enqueued, and the task is
scheduled at its slot (rounded up to the next whole second), so the queue only
holds tasks that may run: one dequeue each, and quiet tenants are not stuck
behind a noisy one. The worker redeems the booking when the task comes; it
needs the same --prefix. The price: one reservation (a Redis script) per task,
so a shaped bulk run is slower than a plain one. Each task is booked at its
cost, and under the shared limit its "upstream" header names, as the worker
reads them by default.
--shape-max-wait refuses (and stops at) a task whose slot is further away.

Settings: flags override the environment (REDIS_URL, QUOTAQ_PREFIX, ... as
named below); a QUOTAQ_* variable that looks like a mistyped one of these is
warned about.

Exit status: 0 done, 1 failed (e.g. Redis unreachable), 2 bad usage or input
(nothing was enqueued).

Examples:
  quotaq-enqueue --tenant acme --type email:send --payload '{"to":"a@example.com"}'
  quotaq-enqueue --tenant acme --type report:build --count 100000 --queue bulk
  quotaq-enqueue --tenant acme --type report:build --count 20000 --shape --shape-max-wait 2h
  quotaq-enqueue --tenant acme --type llm:complete --cost 5    # takes 5 tokens
  jq -c '.[]' jobs.json | quotaq-enqueue --file - --type email:send
  quotaq-enqueue policy set acme --rate 5 --burst 20 --quota 10000 --quota-period 24h
  quotaq-enqueue status --json
  REDIS_URL=rediss://:secret@redis.example.com:6380/0 quotaq-enqueue standing acme

`

func printHelp(w io.Writer) {
	fmt.Fprint(w, helpText)
	e := &enqueueFlags{}
	fs := flag.NewFlagSet(progName, flag.ContinueOnError)
	e.register(fs)
	fmt.Fprintln(w, "Task flags:")
	cmdline.PrintFlags(w, fs, nil)
	printCommonFlags(w)
}

// printCommonFlags ends every help with the flags every command takes.
func printCommonFlags(w io.Writer) {
	fs := flag.NewFlagSet(progName, flag.ContinueOnError)
	(&common{}).register(fs)
	fmt.Fprintln(w, "\nConnection and output flags (every command; flags win over the environment):")
	cmdline.PrintFlags(w, fs, nil)
}

// commandHelp returns a function that prints a command's help: its text,
// the flags that are its own (those of fs that are not common), and the
// common ones.
func commandHelp(text string, fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, text)
		fmt.Fprintln(w, "\nFlags:")
		cmdline.PrintFlags(w, fs, func(f *flag.Flag) bool { return !commonFlags[f.Name] })
		printCommonFlags(w)
	}
}
