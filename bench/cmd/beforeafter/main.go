// Command beforeafter compares two versions of quotaq on one redis-server:
// it builds limiterbench or scriptcost from each version's own source (so
// each measures its own limiter and Lua scripts), runs them in turn, before
// then after, again and again, and prints for every row and figure the
// mean and spread (min–max) of each side, the after/before ratio, and a mark
// where after is worse by more than the larger spread.
//
//	cd bench && go run ./cmd/beforeafter -cmd scriptcost -rounds 3 -- -calls 10000
//	cd bench && go run ./cmd/beforeafter -cmd limiterbench -before 45c71a2 -after HEAD -- -parts under -duration 2s -callers 1,16,64
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
)

// oldNames maps scriptcost's row names up to 45c71a2 to the names that say
// what a row measures, so older versions compare with newer ones. (Its
// general decide.lua, whole, has no counterpart since there is one
// decision script.)
var oldNames = map[string]string{
	"quotaq decide.lua: function definitions only":                                                    "quotaq decision script: function definitions only",
	"quotaq decide.lua: its 5 redis.call()s only":                                                     "redis.call()s of a decision with a stored policy, alone (TIME, HMGET, GET, HMGET, SET)",
	"quotaq lean.lua (the common call), one decision, default policy, active tenant (TIME, GET, SET)": "quotaq, one decision, default policy, active tenant",
	"quotaq lean.lua, one decision, the tenant's own policy":                                          "quotaq, one decision, the tenant's own policy",
	"quotaq lean.lua, 16 decisions (16 tenants) in one run, per decision":                             "quotaq, 16 decisions (16 tenants) in one run, per decision",
}

// renames is the -rename flag: "old name=new name", repeated.
type renames map[string]string

func (r renames) String() string { return "" }

func (r renames) Set(s string) error {
	old, name, ok := strings.Cut(s, "=")
	if !ok || old == "" || name == "" {
		return fmt.Errorf("%q is not 'old name=new name'", s)
	}
	r[old] = name
	return nil
}

type config struct {
	before, after string
	cmd           string
	rounds        int
	out           string
	columns       []string
	rename        renames
	args          []string // for the command
	cmdline       []string // beforeafter's own arguments, to print
}

func main() {
	cfg := config{rename: renames{}}
	for k, v := range oldNames {
		cfg.rename[k] = v
	}
	var columns string
	flag.StringVar(&cfg.before, "before", "45c71a2", "git revision of the code before")
	flag.StringVar(&cfg.after, "after", "worktree", `git revision of the code after, or "worktree": the working tree this runs in`)
	flag.StringVar(&cfg.cmd, "cmd", "", "the benchmark to run: limiterbench or scriptcost")
	flag.IntVar(&cfg.rounds, "rounds", 3, "runs of each side, interleaved (before, after, before, ...)")
	flag.StringVar(&cfg.out, "out", "", "write the Markdown here instead of to stdout")
	flag.StringVar(&columns, "columns", "", "show only these figures (column names, comma-separated); all when empty")
	flag.Var(cfg.rename, "rename", "'old name=new name': a row (by its first cell) to match under a new name; repeat for more")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: beforeafter -cmd limiterbench|scriptcost [flags] [-- the command's flags]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	cfg.args, cfg.cmdline = flag.Args(), os.Args[1:]
	if columns != "" {
		cfg.columns = strings.Split(columns, ",")
	}
	if err := check(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "beforeafter:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var out bytes.Buffer
	if err := run(ctx, &out, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "beforeafter:", err)
		if errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
	if cfg.out == "" {
		_, _ = os.Stdout.Write(out.Bytes())
	} else if err := os.WriteFile(cfg.out, out.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "beforeafter:", err)
		os.Exit(1)
	}
}

// usageError is a bad flag found while running: the exit code is 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// check reports a usage error.
func check(cfg config) error {
	if cfg.cmd != "limiterbench" && cfg.cmd != "scriptcost" {
		return fmt.Errorf("-cmd %q: use -cmd limiterbench or -cmd scriptcost", cfg.cmd)
	}
	if cfg.rounds < 1 {
		return fmt.Errorf("-rounds %d: give 1 or more", cfg.rounds)
	}
	for _, a := range cfg.args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && (name == "addr" || name == "rounds" || name == "lua") {
			return fmt.Errorf("%q after --: beforeafter sets -%s itself (give -rounds before --)", a, name)
		}
	}
	return nil
}

// version is one side: its source and its built command.
type version struct {
	name string // before, after
	rev  string // as given
	desc string // the commit, and whether the working tree differs from it
	src  string // the repository's root
	bin  string
}

func run(ctx context.Context, w *bytes.Buffer, cfg config) error {
	top, err := git(ctx, ".", "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("run it inside quotaq's repository: %w", err)
	}
	tmp, err := os.MkdirTemp("", "quotaq-beforeafter-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sides := []*version{{name: "before", rev: cfg.before}, {name: "after", rev: cfg.after}}
	for _, v := range sides {
		if err := v.build(ctx, top, tmp, cfg.cmd); err != nil {
			return err
		}
	}
	srv, err := harness.StartServer("")
	if err != nil {
		return err
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	load := harness.Load()
	results := map[string]*side{"before": newSide(), "after": newSide()}
	for r := 1; r <= cfg.rounds; r++ {
		for _, v := range sides {
			fmt.Fprintf(os.Stderr, "beforeafter: %s, run %d of %d\n", v.name, r, cfg.rounds)
			// each run starts on an empty server: the sides may store
			// their state differently
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				return err
			}
			out, err := v.measure(ctx, srv.Addr, cfg)
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", v.name, r, err)
			}
			if err := results[v.name].add(out, cfg.rename); err != nil {
				return fmt.Errorf("%s, run %d: %s: %w", v.name, r, cfg.cmd, err)
			}
		}
	}
	fmt.Fprintf(w, "%s, before %s against after %s, %d runs of each interleaved on one redis-server %s; %s at start, %s at the end; %s\n\n",
		cfg.cmd, sides[0].desc, sides[1].desc, cfg.rounds, harness.Version(ctx, rdb), load, harness.Load(),
		time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "    cd bench && go run ./cmd/beforeafter %s\n\n", shellJoin(cfg.cmdline))
	var body bytes.Buffer
	cells, marked := compare(&body, results["before"], results["after"], cfg.columns)
	fmt.Fprintf(w, "Each figure is the mean of the runs with their min–max; **worse** marks a figure where after is worse than before by more than the larger of the two spreads (figures ending in /s: higher is better, except admitted/s, which is not marked; the rest: lower). %d figures compared, %d marked worse.\n\n",
		cells, marked)
	_, err = w.Write(body.Bytes())
	return err
}

// build puts v's source in place (the working tree itself, or an export of
// the revision under tmp) and builds its bench/cmd/<cmd>.
func (v *version) build(ctx context.Context, top, tmp, cmd string) error {
	if v.rev == "worktree" {
		head, err := git(ctx, top, "rev-parse", "--short", "HEAD")
		if err != nil {
			return err
		}
		v.src, v.desc = top, "the working tree at "+head
		if dirty, _ := git(ctx, top, "status", "--porcelain", "--untracked-files=no"); dirty != "" {
			v.desc += " with uncommitted changes"
		}
	} else {
		hash, err := git(ctx, top, "rev-parse", "--verify", "--short", v.rev+"^{commit}")
		if err != nil {
			return usageError{fmt.Errorf("-%s %q is not a commit here: give a git revision (hash, branch, tag) or worktree (%w)", v.name, v.rev, err)}
		}
		v.src, v.desc = filepath.Join(tmp, v.name), hash
		if err := os.Mkdir(v.src, 0o755); err != nil {
			return err
		}
		export := exec.CommandContext(ctx, "git", "-C", top, "archive", hash)
		untar := exec.CommandContext(ctx, "tar", "-x", "-C", v.src)
		if untar.Stdin, err = export.StdoutPipe(); err != nil {
			return err
		}
		if err := export.Start(); err != nil {
			return err
		}
		if out, err := untar.CombinedOutput(); err != nil {
			return fmt.Errorf("git archive | tar: %w: %s", err, out)
		}
		if err := export.Wait(); err != nil {
			return fmt.Errorf("git archive: %w", err)
		}
	}
	v.bin = filepath.Join(tmp, v.name+"-"+cmd)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", v.bin, "./cmd/"+cmd)
	build.Dir = filepath.Join(v.src, "bench")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("%s (%s): go build ./cmd/%s: %w: %s", v.name, v.desc, cmd, err, out)
	}
	return nil
}

// measure runs v's command once against addr and returns its output.
func (v *version) measure(ctx context.Context, addr string, cfg config) (string, error) {
	args := []string{"-rounds", "1", "-addr", addr}
	if cfg.cmd == "scriptcost" {
		args = append(args, "-lua", filepath.Join(v.src, "throttle", "lua"))
	}
	c := exec.CommandContext(ctx, v.bin, append(args, cfg.args...)...)
	c.Dir = filepath.Join(v.src, "bench")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", cfg.cmd, strings.Join(c.Args[1:], " "), err, stderr.Bytes())
	}
	return string(out), nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	c := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

// shellJoin quotes args for a POSIX shell where they need it.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
