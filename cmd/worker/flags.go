package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/cmdline"
	"github.com/quotaq/quotaq/internal/redisconn"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// options are the command's settings, from flags and environment.
type options struct {
	redis            redisconn.Config
	concurrency      int
	queues           queueWeights
	strictPriority   bool
	failOpen         bool
	lease            time.Duration
	batch            int
	prefixFlag       redisconn.Prefix
	prefix           string // resolved from prefixFlag and QUOTAQ_PREFIX
	algorithm        string
	defaultRate      float64
	defaultBurst     int64
	maxWait          time.Duration
	minDelay         time.Duration
	slotTTL          time.Duration
	waitInProcess    time.Duration
	learnFactor      float64
	learnFloor       float64
	learnRecovery    time.Duration
	untenanted       string
	refuseUntenanted bool
	upstreams        string
	delayedCheck     time.Duration
	taskCheck        time.Duration
	shutdownTimeout  time.Duration
	metricsAddr      string
	console          bool
	consoleActions   bool
	consoleHosts     string
	perTenant        bool
	maxTypes         int
	metricsTenants   string
	watch            map[string]string // metricsTenants, parsed
	schedule         string
	scheduleQueue    string
	httpTimeout      time.Duration
	maxRetryAfter    time.Duration
	shadow           bool
	httpAllow        string
	allow            *worker.AllowList // httpAllow, parsed
	echoTypes        string
	logLevel         string
	logFormat        string
	config           string   // --config, QUOTAQ_CONFIG
	version          bool     // --version
	warnings         []string // about the environment, logged at start
}

// queueWeights is the --queues flag: "critical=6,default=3,low=1".
type queueWeights map[string]int

func (q queueWeights) String() string {
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + strconv.Itoa(q[n])
	}
	return strings.Join(parts, ",")
}

func (q queueWeights) Set(v string) error {
	for k := range q {
		delete(q, k)
	}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, hasW := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		weight := 1
		if hasW {
			n, err := strconv.Atoi(strings.TrimSpace(w))
			if err != nil || n < 1 {
				return fmt.Errorf("queue %q has weight %q: give a whole number of at least 1 (critical=6,default=3)", name, w)
			}
			weight = n
		}
		if name == "" {
			return fmt.Errorf("%q has an empty queue name (give name=weight pairs: critical=6,default=3)", part)
		}
		if _, dup := q[name]; dup {
			return fmt.Errorf("queue %q is listed twice", name)
		}
		q[name] = weight
	}
	if len(q) == 0 {
		return errors.New("no queue given (e.g. default=1)")
	}
	return nil
}

// learning is the limiter's Learning the flags say.
func (o *options) learning() throttle.Learning {
	return throttle.Learning{Factor: o.learnFactor, Floor: o.learnFloor, Recovery: o.learnRecovery}
}

const usageHead = `quotaq-worker runs asynq tasks with per-tenant throttling.

Usage:
  quotaq-worker [flags]
  quotaq-worker healthcheck [flags]   is the worker's /healthz answering? (exit 0 or 1)
  quotaq-worker --version

Before a task runs, its tenant (the "tenant" header, else the "tenant" field of
a JSON payload) is checked against its limit in Redis, for the tokens and quota
units its "cost" header says (1 without; a task whose cost is not a whole number
of 1 or more is archived). A task that must wait is moved back to its queue
unchanged (same id, payload, options, retry count; not a failure, even with
MaxRetry(0)) and comes back at its own slot. Handlers: http:call (the generic
outbound call; 429/503 with Retry-After holds the tenant), quotaq:quota:reset
and quotaq:quota:adjust (the scheduler's tasks).

It needs a Redis: set REDIS_URL (or --redis-url, or the Sentinel or Cluster
flags). To try quotaq without one, pass --embedded: the worker then runs an
in-memory Redis, whose data is lost on exit, which quotaq-enqueue with no
configuration reaches. With neither it refuses to start. It also refuses a
Redis whose maxmemory-policy is not noeviction (see --allow-eviction).

Settings, each source overriding the ones before it:
  1. the defaults below;
  2. a config file, --config FILE or QUOTAQ_CONFIG: YAML whose keys are the
     flags' names (concurrency: 20; lists and maps for --queues and
     --http-allow may be written as YAML lists and maps); an unknown key is an
     error;
  3. environment variables: QUOTAQ_<FLAG> for the worker's own flags
     (QUOTAQ_CONCURRENCY=20), REDIS_URL and the others named below for the
     Redis flags; a QUOTAQ_* variable that is not a setting is warned about;
  4. the command line.
Durations are written 250ms, 1.5s, 2m, 1h.

Exit status: 0 after a clean shutdown (SIGTERM, SIGINT), 1 on a runtime error,
2 on a usage or configuration error.
`

// cliOnly are flags of the command line alone, never read from the
// environment or a config file.
var cliOnly = map[string]bool{"version": true}

// notInFile are flags a config file may not set.
var notInFile = map[string]bool{"config": true, "version": true}

// flagSet defines every flag of the worker on a new set, bound to o, and
// returns it with the names of the flags that read their own environment
// variables (the Redis flags and --prefix, which quotaq-enqueue shares; each
// names its variable in its help). The worker's own flags read QUOTAQ_<FLAG>.
// One line per flag: the environment and the config file follow by
// themselves.
func (o *options) flagSet() (fs *flag.FlagSet, shared map[string]bool) {
	fs = flag.NewFlagSet("quotaq-worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help is printed by parseFlags
	o.redis.RegisterFlags(fs)
	fs.Var(&o.prefixFlag, "prefix", redisconn.PrefixUsage)
	shared = map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { shared[f.Name] = true })

	fs.StringVar(&o.config, "config", "", "YAML `file` of settings, keyed by the flags' names; the environment and flags override it")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.IntVar(&o.concurrency, "concurrency", 10, "how many tasks run at once")
	fs.Var(o.queues, "queues", "queues to serve, with `weights`: critical=6,default=3,low=1 (a higher weight is served more often)")
	fs.BoolVar(&o.strictPriority, "strict-priority", false, "serve queues strictly by weight: a lower queue only when the higher ones are empty")
	fs.BoolVar(&o.failOpen, "fail-open", false, "when the limiter's Redis cannot be reached, run tasks anyway (default: fail closed, put them back for a second)")
	fs.DurationVar(&o.lease, "lease", 100*time.Millisecond, "let Redis lease this worker tokens of tenants far under their limits, spent here without a round trip for up to this long; never past a policy, but another process's hold or policy change is seen up to this late (0: off, ask Redis for every task)")
	fs.IntVar(&o.batch, "batch", 0, "let decisions of tasks that start at the same time share one round trip and one script run, up to this many (default 0: off; measured, it does not pay for asynq's one-task-at-a-time workers: see BENCHMARKS.md)")
	fs.StringVar(&o.algorithm, "algorithm", throttle.TokenBucket.String(), algorithmUsage())
	fs.Float64Var(&o.defaultRate, "default-rate", 10, "tokens per second of tenants with no policy, until a default is stored in Redis (quotaq-enqueue policy set --default); recorded in Redis so quotaq-enqueue shows it (the last worker started wins)")
	fs.Int64Var(&o.defaultBurst, "default-burst", 10, "bucket size in tokens of tenants with no policy, until a default is stored in Redis")
	fs.DurationVar(&o.maxWait, "max-wait", 0, "the longest a task may wait in all because of throttling before it is archived with a message saying so (0: no cap, wait as long as it takes)")
	fs.DurationVar(&o.minDelay, "min-delay", worker.DefaultMinDelay, "the shortest time a throttled task stays out of its queue")
	fs.DurationVar(&o.slotTTL, "slot-ttl", throttle.DefaultSlotTTL, "for tenants and upstreams whose policy has a concurrency limit: how long a running task's slot is held without renewal (renewed every third of it while the task runs), so the slots of a worker that dies free at most this late")
	fs.Float64Var(&o.learnFactor, "learn-factor", throttle.DefaultLearning.Factor, "learning an upstream tighter than the policy: each 429/503 (worker.RetryAfter) multiplies the rate the tenant runs at by this, once per second at most; it climbs back to the policy's rate while none comes (0: learning off, a 429 only holds the tenant for its Retry-After)")
	fs.Float64Var(&o.learnFloor, "learn-floor", throttle.DefaultLearning.Floor, "the lowest rate learning cuts a tenant to, as a fraction of its policy's rate")
	fs.DurationVar(&o.learnRecovery, "learn-recovery", throttle.DefaultLearning.Recovery, "how long a learned rate takes to climb back by the policy's whole rate")
	fs.DurationVar(&o.waitInProcess, "wait-in-process", worker.DefaultWaitInProcess, "the longest a task waits in the worker, holding its slot, for a start booked before it was dequeued (a shaped task the forwarder brought early, a late task given its turn), instead of being put back; up to --concurrency tasks wait at once (0: never wait, always put back)")
	fs.StringVar(&o.untenanted, "untenanted", worker.DefaultUntenanted, "tenant id under which tasks with no tenant are limited, together")
	fs.BoolVar(&o.refuseUntenanted, "refuse-untenanted", false, "archive tasks with no tenant instead of limiting them under --untenanted")
	fs.StringVar(&o.upstreams, "upstreams", "", "comma-separated upstream `names` or patterns (api.*) a task's \"upstream\" header may name; it is then also limited by that upstream's shared policy (quotaq-enqueue policy set upstream:NAME). A task naming another upstream is archived (default: none accepted)")
	fs.DurationVar(&o.delayedCheck, "delayed-task-check-interval", worker.DefaultDelayedTaskCheckInterval, "how often asynq moves due retries and ProcessIn/ProcessAt tasks to their queue (asynq's default: 5s). Throttled tasks do not wait for it: the worker wakes them itself. Shorter: retries run closer to their time, for one Redis script per queue per interval")
	fs.DurationVar(&o.taskCheck, "task-check-interval", worker.DefaultTaskCheckInterval, "how long an idle worker sleeps before it looks at empty queues again (asynq's default: 1s)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM/SIGINT, how long running tasks may finish before they are handed back to their queue (give a container's stop grace period a few seconds more)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:2112", "`address` of the Prometheus /metrics and /healthz endpoint; the default listens on loopback only, give :2112 to listen on every interface (\"\": none)")
	fs.BoolVar(&o.console, "console", true, "serve the live web page of the tenants at /ui/ on --metrics-addr (read-only unless --console-actions)")
	fs.BoolVar(&o.consoleActions, "console-actions", false, "let the web page reset a tenant's quota, release its hold and change its policy, each confirmed in the page and logged; whoever reaches --metrics-addr can then do so")
	fs.StringVar(&o.consoleHosts, "console-hosts", "", "comma-separated host `names` the web page may also be reached under, besides IP addresses, localhost and this machine's name: the name an authenticating proxy in front of it serves it under (other names are refused, against DNS rebinding)")
	fs.BoolVar(&o.perTenant, "per-tenant-metrics", false, "label metrics by tenant too (one series per tenant: only with a bounded number of tenants)")
	fs.IntVar(&o.maxTypes, "metrics-max-types", worker.DefaultMaxTypes, "how many distinct task types get their own metrics \"type\" label; later ones are counted as \""+worker.OtherType+"\" (-1: no cap)")
	fs.StringVar(&o.metricsTenants, "metrics-tenants", "", metricsTenantsUsage)
	fs.StringVar(&o.schedule, "schedule", "", "a quota schedule `file` (YAML: cron entries that reset or adjust tenants' quotas) to run in this worker")
	fs.StringVar(&o.scheduleQueue, "schedule-queue", "", "queue of the schedule's tasks (default: the first of --queues by weight, then name); every replica must use the same")
	fs.DurationVar(&o.httpTimeout, "http-timeout", 30*time.Second, "timeout of one http:call request")
	fs.StringVar(&o.httpAllow, "http-allow", "", "comma-separated `hosts` http:call may reach: names (api.example.com), wildcards (*.example.com), IPs and CIDR blocks (10.0.0.0/8); every redirect and resolved address is checked. Default \"\": any host, loopback and private networks included, except link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200, 168.63.129.16) and 0.0.0.0, which stay denied unless an IP or CIDR entry names them. Set it in production")
	fs.DurationVar(&o.maxRetryAfter, "max-retry-after", worker.DefaultMaxRetryAfter, "the longest an upstream's Retry-After (429/503, seconds or a date) or a spent budget's reset (X-RateLimit-Reset) puts a task back and holds its tenant; a longer one is cut to it, logged and counted (quotaq_worker_upstream_retry_after_capped_total)")
	fs.BoolVar(&o.shadow, "shadow", false, "shadow mode, to try quotaq on live traffic before it enforces anything: decide on every task, count (quotaq_worker_shadow_* metrics, quotaq-enqueue status) and log what would be throttled, and run every task; nothing is put back, held or archived")
	fs.StringVar(&o.echoTypes, "echo-types", "", "comma-separated task `types` to handle by logging them and succeeding (to try quotaq with quotaq-enqueue)")
	fs.StringVar(&o.logLevel, "log-level", "info", "`level`: debug, info, warn or error (debug logs every throttled task)")
	fs.StringVar(&o.logFormat, "log-format", "text", "`format`: text or json (durations as \"1.5s\")")
	return fs, shared
}

// envOf is the environment variable that sets flag f, "" for none.
func envOf(f *flag.Flag, shared map[string]bool) string {
	switch {
	case cliOnly[f.Name]:
		return ""
	case shared[f.Name]:
		return cmdline.UsageEnv(f)
	}
	return cmdline.EnvName(f.Name)
}

// printHelp writes the worker's help: what it does, how settings combine, its
// own flags, then the Redis flags.
func printHelp(w io.Writer, fs *flag.FlagSet, shared map[string]bool) {
	fmt.Fprint(w, usageHead)
	fmt.Fprintln(w, "\nFlags:")
	cmdline.PrintFlags(w, fs, func(f *flag.Flag) bool { return !shared[f.Name] })
	fmt.Fprintln(w, "\nRedis flags (shared with quotaq-enqueue; each reads the variable it names):")
	cmdline.PrintFlags(w, fs, func(f *flag.Flag) bool { return shared[f.Name] })
}

// errVersion is returned by parseFlags after printing the version.
var errVersion = errors.New("version printed")

// parseFlags reads the command line, the environment and the config file into
// options (see usageHead for which wins). A usage error (exit 2) is returned
// as a one-line error; --help and --version print to stdout and return
// flag.ErrHelp and errVersion.
func parseFlags(args []string, env cmdline.Env, stdout io.Writer) (*options, error) {
	o := &options{queues: queueWeights{"default": 1}}
	o.redis.AllowEmbedded = true
	o.redis.Env = env.Lookup
	fs, shared := o.flagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, fs, shared)
		}
		return nil, cmdline.Explain(fs, err)
	}
	if o.version {
		fmt.Fprintln(stdout, cmdline.Version("quotaq-worker"))
		return nil, errVersion
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: quotaq-worker takes flags only", fs.Arg(0))
	}
	given := cmdline.Given(fs)
	var known []string
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := envOf(f, shared)
		if strings.HasPrefix(name, "QUOTAQ_") {
			known = append(known, name)
		}
		if err != nil || given[f.Name] || shared[f.Name] || name == "" {
			return // the shared flags read their variables in redisconn
		}
		if v, ok := env[name]; ok {
			if serr := cmdline.Set(fs, f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, serr)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if o.config != "" {
		if err := o.applyConfig(fs, func(f *flag.Flag) bool {
			if given[f.Name] {
				return false
			}
			_, inEnv := env[envOf(f, shared)]
			return !inEnv
		}); err != nil {
			return nil, err
		}
	}
	o.warnings = cmdline.UnknownEnv("quotaq-worker", env, known, false)
	prefix, err := o.prefixFlag.Resolve(env.Lookup)
	if err != nil {
		return nil, err
	}
	o.prefix = prefix
	return o, o.validate()
}

func (o *options) validate() error {
	switch {
	case o.concurrency < 1:
		return fmt.Errorf("--concurrency %d: give at least 1", o.concurrency)
	case throttle.ValidateRate(o.defaultRate) != nil:
		return fmt.Errorf("--default-rate %v: give a number of tokens per second from %v (one token per 240h) to %v", o.defaultRate, throttle.MinRate, throttle.MaxRate)
	case o.defaultBurst < 1:
		return fmt.Errorf("--default-burst %d: give at least 1", o.defaultBurst)
	case o.maxWait < 0:
		return fmt.Errorf("--max-wait %s is negative (0 means no cap)", o.maxWait)
	case o.lease < 0:
		return fmt.Errorf("--lease %s is negative (0 turns leases off)", o.lease)
	case o.batch < 0:
		return fmt.Errorf("--batch %d is negative (0 turns batching off)", o.batch)
	case o.minDelay < 0:
		return fmt.Errorf("--min-delay %s is negative", o.minDelay)
	case o.slotTTL < time.Second:
		return fmt.Errorf("--slot-ttl %s is below 1s: a slot must outlive a renewal's round trip", o.slotTTL)
	case o.learning().Validate() != nil:
		return fmt.Errorf("--learn-factor, --learn-floor, --learn-recovery: %w", o.learning().Validate())
	case o.waitInProcess < 0:
		return fmt.Errorf("--wait-in-process %s is negative (0: tasks never wait in the worker)", o.waitInProcess)
	case o.delayedCheck <= 0:
		return fmt.Errorf("--delayed-task-check-interval %s: give a positive duration such as 1s", o.delayedCheck)
	case o.taskCheck <= 0:
		return fmt.Errorf("--task-check-interval %s: give a positive duration such as 250ms", o.taskCheck)
	case o.shutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout %s: give a positive duration such as 10s", o.shutdownTimeout)
	case o.httpTimeout <= 0:
		return fmt.Errorf("--http-timeout %s: give a positive duration such as 30s", o.httpTimeout)
	case o.maxRetryAfter <= 0:
		return fmt.Errorf("--max-retry-after %s: give a positive duration such as 1h", o.maxRetryAfter)
	}
	if err := (throttle.Policy{Rate: o.defaultRate, Burst: o.defaultBurst}).Validate(); err != nil {
		return fmt.Errorf("--default-rate %v --default-burst %d: %v", o.defaultRate, o.defaultBurst, err)
	}
	allow, err := worker.ParseAllowList(strings.Split(o.httpAllow, ",")...)
	if err != nil {
		return fmt.Errorf("--http-allow: %v", err)
	}
	o.allow = allow
	if o.watch, err = parseWatch(o.metricsTenants); err != nil {
		return err
	}
	if _, err := throttle.ParseAlgorithm(o.algorithm); err != nil {
		return fmt.Errorf("--algorithm: %v", err)
	}
	if !o.refuseUntenanted {
		if err := throttle.ValidateTenant(o.untenanted); err != nil {
			return fmt.Errorf("--untenanted: %v (or give --refuse-untenanted)", err)
		}
	}
	if err := worker.ValidateUpstreamPatterns(o.upstreamList()...); err != nil {
		return fmt.Errorf("--upstreams: %v", err)
	}
	if _, err := o.level(); err != nil {
		return err
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("--log-format %q: give text or json", o.logFormat)
	}
	if o.schedule != "" {
		if o.scheduleQueue == "" {
			o.scheduleQueue = o.firstQueue()
		}
		if _, ok := o.queues[o.scheduleQueue]; !ok {
			return fmt.Errorf("--schedule-queue %q is not one of --queues (%s): this worker would never run the schedule's tasks", o.scheduleQueue, o.queues)
		}
	}
	return nil
}

// firstQueue is the queue with the highest weight, then the first by name.
func (o *options) firstQueue() string {
	best, bestW := "", 0
	for n, w := range o.queues {
		if w > bestW || (w == bestW && n < best) {
			best, bestW = n, w
		}
	}
	return best
}

func (o *options) level() (slog.Level, error) {
	switch strings.ToLower(o.logLevel) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: give debug, info, warn or error", o.logLevel)
}

func asynqLevel(l slog.Level) asynq.LogLevel {
	switch {
	case l <= slog.LevelDebug:
		return asynq.DebugLevel
	case l <= slog.LevelInfo:
		return asynq.InfoLevel
	case l <= slog.LevelWarn:
		return asynq.WarnLevel
	}
	return asynq.ErrorLevel
}

// upstreamList is --upstreams as a list.
func (o *options) upstreamList() []string { return splitList(o.upstreams) }

// algorithmUsage lists the limiter's algorithms for --algorithm.
func algorithmUsage() string {
	var names []string
	for _, a := range throttle.Algorithms() {
		names = append(names, fmt.Sprintf("%s (%s)", a, a.Summary()))
	}
	return "limiter algorithm: " + strings.Join(names, ", ")
}

// splitList splits a comma-separated flag value into its trimmed, non-empty
// items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
