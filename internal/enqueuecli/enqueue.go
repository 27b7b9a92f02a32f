package enqueuecli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// enqueueFlags are the flags of the default command.
type enqueueFlags struct {
	tenant, typ, payload, queue string
	at, deadline, id, file      string
	in, timeout, unique, retain time.Duration
	count, concurrency          int
	maxRetry                    optInt
	progress                    string
	pipeline                    bool
	headers                     headerFlag
	shape                       bool
	shapeMaxWait                time.Duration
	cost                        costFlag
}

func (e *enqueueFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.tenant, "tenant", "", "tenant `id`, put into the task's \"tenant\" header")
	fs.StringVar(&e.typ, "type", "", "task `type` (e.g. email:send)")
	fs.StringVar(&e.payload, "payload", "", "task payload, `JSON`, stored as given (default: none)")
	fs.StringVar(&e.queue, "queue", "default", "asynq `queue`")
	fs.DurationVar(&e.in, "in", 0, "process after this `duration` (e.g. 30s)")
	fs.StringVar(&e.at, "at", "", "process at this `time` (RFC 3339, e.g. 2026-11-22T09:00:00Z)")
	fs.Var(&e.maxRetry, "max-retry", "asynq max retry `count` (default: asynq's, 25)")
	fs.DurationVar(&e.timeout, "timeout", 0, "per-attempt processing timeout (`duration`; default: asynq's, 30m)")
	fs.StringVar(&e.deadline, "deadline", "", "processing deadline (RFC 3339 `time`)")
	fs.DurationVar(&e.unique, "unique", 0, "drop duplicates of this task (same type, payload, queue) for this `duration` (>= 1s)")
	fs.DurationVar(&e.retain, "retention", 0, "keep the completed task this `duration`")
	fs.StringVar(&e.id, "id", "", "task `id` (default: random); a second task with the same id is skipped")
	fs.Var(&e.headers, "header", "extra task header `key=value` (repeatable)")
	fs.IntVar(&e.count, "count", 1, "enqueue `N` copies of the task")
	fs.StringVar(&e.file, "file", "", "enqueue the tasks of this NDJSON `file`, one JSON object a line (- for stdin)")
	fs.IntVar(&e.concurrency, "concurrency", defaultConcurrency, "how many enqueues run at once in bulk; 1 keeps the input's `order`")
	fs.BoolVar(&e.pipeline, "pipeline", true, "in bulk, send concurrent enqueues to Redis in shared pipelines (--pipeline=false: one round trip each)")
	fs.Var(&e.cost, "cost", "how many tokens and quota units the task costs, `N` >= 1, put into its \"cost\" header (default: none, the worker charges 1); refused if above the tenant's burst or quota")
	fs.BoolVar(&e.shape, "shape", false, "shape at enqueue: book each task's tokens with the tenant's limiter now and enqueue it to run at its slot (see --help); an NDJSON line's \"shape\" overrides it")
	fs.DurationVar(&e.shapeMaxWait, "shape-max-wait", 0, "with --shape, refuse (and stop at) a task whose slot is further away than this `duration`; 0: no cap")
	fs.StringVar(&e.progress, "progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), always, never (`when`)")
}

// headerFlag collects repeated --header key=value flags.
type headerFlag map[string]string

func (h *headerFlag) String() string { return "" }

func (h *headerFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%q is not key=value", v)
	}
	if *h == nil {
		*h = headerFlag{}
	}
	(*h)[k] = val
	return nil
}

// optInt is an int flag that knows whether it was given.
type optInt struct {
	v   int
	set bool
}

func (o *optInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.Itoa(o.v)
}

func (o *optInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not a whole number")
	}
	if v < 0 {
		return fmt.Errorf("negative; give 0 or more")
	}
	o.v, o.set = v, true
	return nil
}

// baseSpec turns the flags into the spec every task starts from.
func (e *enqueueFlags) baseSpec() (spec, error) {
	s := spec{
		Tenant: e.tenant, Type: e.typ, Queue: e.queue, In: e.in, MaxRetry: -1,
		Timeout: e.timeout, Unique: e.unique, Retention: e.retain, ID: e.id, Headers: e.headers,
		Shape: e.shape, Cost: int64(e.cost),
	}
	if e.maxRetry.set {
		s.MaxRetry = e.maxRetry.v
	}
	if e.payload != "" {
		s.Payload = []byte(e.payload)
	}
	var err error
	if e.at != "" {
		if s.At, err = parseTime("--at", e.at); err != nil {
			return s, err
		}
	}
	if e.deadline != "" {
		if s.Deadline, err = parseTime("--deadline", e.deadline); err != nil {
			return s, err
		}
	}
	if e.id != "" && strings.TrimSpace(e.id) == "" {
		return s, fmt.Errorf("--id is blank")
	}
	return s, nil
}

func flagNames(f string) string { return "--" + f }

func runEnqueue(ctx context.Context, c *common, e *enqueueFlags, fs *flag.FlagSet, cio cmdIO) error {
	if len(fs.Args()) > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if e.count < 1 {
		return usagef("--count %d: give 1 or more", e.count)
	}
	if e.concurrency < 1 {
		return usagef("--concurrency %d: give 1 or more", e.concurrency)
	}
	if e.shapeMaxWait < 0 {
		return usagef("--shape-max-wait %s is negative (use e.g. 10m, or 0 for no cap)", e.shapeMaxWait)
	}
	if e.shapeMaxWait > 0 && !e.shape && e.file == "" {
		return usagef("--shape-max-wait without --shape: add --shape")
	}
	switch e.progress {
	case "auto", "always", "never":
	default:
		return usagef("--progress %q: use auto, always or never", e.progress)
	}
	base, err := e.baseSpec()
	if err != nil {
		return usagef("%v", err)
	}

	var b batch
	if e.file != "" {
		if e.count != 1 {
			return usagef("--count and --file both given; a file lists each task")
		}
		// The flags given are defaults for the lines: check them on their own.
		probe := base
		probe.Tenant, probe.Type = orDefault(probe.Tenant, "x"), orDefault(probe.Type, "x")
		probe.ID = "" // ids are per line
		if err := probe.check(flagNames); err != nil {
			return usagef("%v", err)
		}
		if base.ID != "" {
			return usagef("--id and --file both given; put an \"id\" on each line instead")
		}
		in, closeIn, err := openInput(e.file, cio.stdin)
		if err != nil {
			return usagef("%v", err)
		}
		tasks, err := readNDJSON(in, base)
		closeIn()
		if err != nil {
			return err // usage errors, with their line numbers
		}
		if len(tasks) == 0 {
			return usagef("%s holds no tasks", inputName(e.file))
		}
		b = batch{n: len(tasks), item: func(i int) item { return tasks[i] }}
	} else {
		if err := base.check(flagNames); err != nil {
			return usagef("%v", err)
		}
		if base.ID != "" && e.count > 1 {
			return usagef("--id with --count %d: the copies would all have the same id", e.count)
		}
		it := base.item()
		b = batch{n: e.count, item: func(int) item { return it }}
	}

	// Everything is valid: only now touch Redis.
	conn, err := c.open(ctx, cio.stderr)
	if err != nil {
		return err
	}
	defer conn.Close()
	rdb := conn.Redis
	if b.n > 1 && e.pipeline {
		p, closeP := autoPipelined(rdb)
		defer closeP()
		rdb = p
	}
	// A task that costs more than its tenant's burst would never run.
	if err := checkCosts(ctx, func() *throttle.Limiter { return c.limiter(ctx, conn) }, b); err != nil {
		return err
	}
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	enq := enqueuer{client: client}
	if b.shaped() {
		// the workers' defaults: cost from the "cost" header (1 without),
		// upstream from the "upstream" header
		// (any: the worker archives a task naming one it does not accept)
		logger := slog.New(slog.NewTextHandler(cio.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		lopts := []throttle.Option{throttle.WithPrefix(c.resolvePrefix())}
		if b.n > 1 && e.pipeline {
			// concurrent reservations share round trips (measured: 20,000
			// shaped tasks 1.2x as fast as through the auto-pipeliner)
			lopts = append(lopts, throttle.WithBatching(0, 0))
		}
		l := throttle.New(conn.Redis, lopts...)
		enq.shaper = worker.NewShaper(l, client, worker.WithMaxWait(e.shapeMaxWait), worker.WithLogger(logger), worker.WithAllowedUpstreams("*"))
	}

	showProgress := e.progress == "always" || (e.progress == "auto" && cio.stderrTTY && b.n > 1)
	var bar *progressBar
	if showProgress {
		bar = startProgress(cio.stderr, b.n)
	}
	res := enqueueAll(ctx, enq, b, e.concurrency, bar)
	if bar != nil {
		bar.stop()
	}
	if res.err != nil {
		if errors.Is(res.err, worker.ErrMaxWait) {
			// not a failure of Redis: the run stopped where it was told to
			return fmt.Errorf("stopped by --shape-max-wait: enqueued %d of %d tasks (%d shaped, %d duplicates skipped); the next was not: %w",
				res.enqueued, b.n, res.shaped, res.duplicates, res.err)
		}
		if res.enqueued == 0 && res.duplicates == 0 {
			return fmt.Errorf("enqueue into Redis at %s: %w", conn.Addr, res.err)
		}
		return fmt.Errorf("enqueued %d of %d tasks (%d duplicates skipped), then failed (Redis at %s): %w",
			res.enqueued, b.n, res.duplicates, conn.Addr, res.err)
	}
	return printSummary(cio.stdout, c.json, b.n, res)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func inputName(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}

func openInput(file string, stdin io.Reader) (io.Reader, func(), error) {
	if file == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("--file: %v", err)
	}
	return f, func() { f.Close() }, nil
}

func printSummary(w io.Writer, asJSON bool, n int, res bulkResult) error {
	secs := res.elapsed.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(res.enqueued) / secs
	}
	if asJSON {
		out := struct {
			Enqueued   int     `json:"enqueued"`
			Shaped     int     `json:"shaped"`
			Duplicates int     `json:"duplicates"`
			Seconds    float64 `json:"seconds"`
			PerSecond  float64 `json:"per_second"`
			ID         string  `json:"id,omitempty"`
			Queue      string  `json:"queue,omitempty"`
		}{res.enqueued, res.shaped, res.duplicates, secs, rate, "", ""}
		if n == 1 && res.last != nil {
			out.ID, out.Queue = res.last.ID, res.last.Queue
		}
		return json.NewEncoder(w).Encode(out)
	}
	if n == 1 {
		if res.last == nil {
			_, err := fmt.Fprintln(w, "task not enqueued: a duplicate (same --id, or --unique) is already there")
			return err
		}
		i := res.last
		state := strings.ToLower(i.State.String())
		if res.shaped > 0 && i.State == asynq.TaskStateScheduled {
			state = "shaped, scheduled for " + i.NextProcessAt.UTC().Format(time.RFC3339)
		} else if res.shaped > 0 {
			state = "shaped, " + state
		}
		_, err := fmt.Fprintf(w, "enqueued task %s (type %s, tenant %s, queue %s, %s)\n",
			i.ID, i.Type, i.Headers["tenant"], i.Queue, state)
		return err
	}
	dup := ""
	if res.duplicates > 0 {
		dup = fmt.Sprintf(", %d duplicates skipped", res.duplicates)
	}
	if res.shaped > 0 {
		dup = fmt.Sprintf(", %d shaped", res.shaped) + dup
	}
	_, err := fmt.Fprintf(w, "enqueued %d tasks in %s (%.0f tasks/s)%s\n", res.enqueued, res.elapsed.Round(time.Millisecond), rate, dup)
	return err
}
