// Package enqueuecli is the quotaq-enqueue command: it enqueues tenants'
// tasks into asynq, one or in bulk, and administers the tenants' policies and
// quotas. cmd/enqueue is a thin main around Run, so tests run the whole
// command in-process.
//
// Exit codes: 0 success, 1 a runtime failure (Redis unreachable, an enqueue
// failed), 2 a usage or configuration error (bad flag, bad input, a Redis
// whose maxmemory-policy may evict keys); such an error is always found
// before anything is written.
package enqueuecli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/cmdline"
	"github.com/quotaq/quotaq/internal/redisconn"
	"github.com/quotaq/quotaq/internal/tenantstatus"
	"github.com/quotaq/quotaq/throttle"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

const progName = "quotaq-enqueue"

// usageError is a mistake in the command line or the input: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// io bundles the command's streams and environment.
type cmdIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            cmdline.Env
	// stderrTTY reports whether stderr is a terminal (progress bar).
	stderrTTY bool
}

// Run runs the command with args (without the program name) and returns its
// exit code. It reads the environment (REDIS_URL, QUOTAQ_PREFIX, ...) from the
// process.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, args, cmdIO{stdin: stdin, stdout: stdout, stderr: stderr, env: cmdline.OSEnv(), stderrTTY: isTerminal(stderr)})
}

func run(ctx context.Context, args []string, cio cmdIO) int {
	err := dispatch(ctx, args, cio)
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue), errors.Is(err, redisconn.ErrInvalidConfig), errors.Is(err, redisconn.ErrEvictionPolicy):
		fmt.Fprintf(cio.stderr, "%s: %s (see %s --help)\n", progName, cmdline.OneLine(err.Error()), progName)
		return ExitUsage
	default:
		fmt.Fprintf(cio.stderr, "%s: %s\n", progName, cmdline.OneLine(err.Error()))
		return ExitFailure
	}
}

// common holds the flags every command takes.
type common struct {
	conn     redisconn.Config
	prefix   redisconn.Prefix
	resolved string // the prefix, resolved by open
	json     bool
	env      func(string) (string, bool)
}

func (c *common) register(fs *flag.FlagSet) {
	c.conn.RegisterFlags(fs)
	fs.Var(&c.prefix, "prefix", redisconn.PrefixUsage)
	fs.BoolVar(&c.json, "json", c.json, "print the result as JSON")
}

// commonFlags are the names register defines, allowed before a command name.
var commonFlags = func() map[string]bool {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	(&common{}).register(fs)
	m := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { m[f.Name] = true })
	return m
}()

// resolvePrefix is the limiter's key prefix, resolved by open.
func (c *common) resolvePrefix() string { return c.resolved }

// open resolves the prefix and connects to Redis. Its errors name the
// address, never the password.
func (c *common) open(ctx context.Context, stderr io.Writer) (*redisconn.Conn, error) {
	p, err := c.prefix.Resolve(c.env)
	if err != nil {
		return nil, usagef("%v", err)
	}
	c.resolved = p
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	conn, err := c.conn.Open(ctx, logger)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// limiter is a Limiter as the workers have it: with the default policy the
// workers were started with (until one is stored in Redis), when they
// recorded it.
func (c *common) limiter(ctx context.Context, conn *redisconn.Conn) *throttle.Limiter {
	opts := []throttle.Option{throttle.WithPrefix(c.resolvePrefix())}
	if p, ok, _ := tenantstatus.WorkerDefault(ctx, conn.Redis, c.resolvePrefix()); ok {
		opts = append(opts, throttle.WithDefaultPolicy(p))
	}
	return throttle.New(conn.Redis, opts...)
}

func (c *common) inspector(conn *redisconn.Conn) *asynq.Inspector {
	return asynq.NewInspectorFromRedisClient(conn.Redis)
}

// newFlagSet returns a flag set that reports errors to the caller instead of
// printing them, with the common flags registered.
func newFlagSet(name string, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.register(fs)
	return fs
}

// parse parses args on fs, allowing positional arguments between flags
// ("policy set acme --rate 5"), and returns the positional ones. -h prints
// help to stdout.
func parse(fs *flag.FlagSet, args []string, help func(io.Writer), stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				help(stdout)
				return nil, flag.ErrHelp
			}
			return nil, usagef("%v", cmdline.Explain(fs, err))
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		rest := fs.Args()
		// flag stops at "--" too: everything after it is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func dispatch(ctx context.Context, args []string, cio cmdIO) error {
	c := &common{env: cio.env.Lookup}
	c.conn.Env = cio.env.Lookup
	e := &enqueueFlags{}
	fs := newFlagSet(progName, c)
	e.register(fs)
	var version bool
	fs.BoolVar(&version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(cio.stdout)
			return flag.ErrHelp
		}
		return usagef("%v", cmdline.Explain(fs, err))
	}
	if version {
		fmt.Fprintln(cio.stdout, cmdline.Version(progName))
		return flag.ErrHelp
	}
	warnEnv(cio)
	if fs.NArg() == 0 {
		return runEnqueue(ctx, c, e, fs, cio)
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var misplaced []string
	fs.Visit(func(f *flag.Flag) {
		if !commonFlags[f.Name] {
			misplaced = append(misplaced, "--"+f.Name)
		}
	})
	if len(misplaced) > 0 {
		return usagef("%s is a flag for enqueueing, not for the %q command", strings.Join(misplaced, ", "), cmd)
	}
	switch cmd {
	case "policy":
		return runPolicy(ctx, c, rest, cio)
	case "standing", "tenant":
		return runStanding(ctx, c, rest, cio)
	case "status":
		return runStatus(ctx, c, rest, cio)
	case "quota":
		return runQuota(ctx, c, rest, cio)
	case "unhold":
		return runUnhold(ctx, c, rest, cio)
	case "help":
		printHelp(cio.stdout)
		return nil
	default:
		return usagef("unknown command %q%s (commands: %s; with none, it enqueues)", cmd, cmdline.Suggest("", cmd, commands), strings.Join(commands, ", "))
	}
}

// commands are the command names dispatch knows, besides help.
var commands = []string{"policy", "standing", "status", "quota", "unhold"}

// warnEnv warns on stderr about QUOTAQ_* variables that look like a
// mistyped one of those the command reads (QUOTAQ_PREFX). Others are left
// alone: they may be quotaq-worker's, set in a shared environment.
func warnEnv(cio cmdIO) {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	(&common{}).register(fs)
	var known []string
	fs.VisitAll(func(f *flag.Flag) {
		if name := cmdline.UsageEnv(f); strings.HasPrefix(name, "QUOTAQ_") {
			known = append(known, name)
		}
	})
	for _, w := range cmdline.UnknownEnv(progName, cio.env, known, true) {
		fmt.Fprintf(cio.stderr, "%s: warning: %s\n", progName, w)
	}
}
