package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
	"github.com/quotaq/quotaq/internal/redistest"
)

// countInstructions runs each variant calls times on a redis-server of its
// own under callgrind and prints the instructions the server executed per
// decision: the whole command (reading it, the script, its redis.call()s,
// writing the reply), counted from a warm state.
func countInstructions(ctx context.Context, vs []variant, calls int) error {
	for _, tool := range []string{"valgrind", "callgrind_control", "redis-server"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("-instructions needs %s on PATH (apt install valgrind redis-server): %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "quotaq-callgrind-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := redistest.FreePort()
	if err != nil {
		return err
	}
	srv := exec.Command("valgrind", "--tool=callgrind", "--dump-instr=no",
		"--callgrind-out-file="+filepath.Join(dir, "callgrind.out"),
		"redis-server", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir)
	srv.Stdout, srv.Stderr = nil, nil
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// (valgrind takes seconds to start the server: wait until it listens)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server under callgrind did not listen on %s in 2 minutes", addr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer rdb.Close()
	if err := rdb.HSet(ctx, "q:{o}:policy", "t", 1000, "b", 1000000, "q", 0, "qp", 0).Err(); err != nil {
		return err
	}
	pid := strconv.Itoa(srv.Process.Pid)
	control := func(arg string) error {
		if out, err := exec.CommandContext(ctx, "callgrind_control", arg, pid).CombinedOutput(); err != nil {
			return fmt.Errorf("callgrind_control %s: %v: %s", arg, err, out)
		}
		return nil
	}
	per := make([]float64, len(vs))
	for i, v := range vs {
		run, err := v.load(ctx, rdb)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		for range 50 { // warm: the state exists, the code is cached
			_ = run().Err()
		}
		if err := control("-z"); err != nil {
			return err
		}
		for range calls {
			if err := run().Err(); err != nil && err != redis.Nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
		}
		if err := control("-d"); err != nil {
			return err
		}
		ir, err := lastDump(dir)
		if err != nil {
			return err
		}
		per[i] = float64(ir) / float64(calls) / float64(max(1, len(v.keys)/5))
	}
	fmt.Printf("redis-server %s under valgrind's callgrind, %d calls per variant, one caller, %s\n\n",
		harness.Version(ctx, rdb), calls, time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| script | instructions per decision (callgrind) |")
	fmt.Println("|---|---:|")
	for i, v := range vs {
		fmt.Printf("| %s | %s |\n", v.name, strconv.FormatFloat(per[i], 'f', 0, 64))
	}
	return nil
}

// lastDump returns the instructions counted in the newest dump in dir.
func lastDump(dir string) (int64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "callgrind.out.*"))
	if err != nil || len(files) == 0 {
		return 0, fmt.Errorf("no callgrind dump in %s", dir)
	}
	// dumps are numbered callgrind.out.N in order
	slices.SortFunc(files, func(a, b string) int { return dumpNumber(a) - dumpNumber(b) })
	f, err := os.Open(files[len(files)-1])
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "summary:"); ok {
			return strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		}
		if rest, ok := strings.CutPrefix(line, "totals:"); ok {
			return strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no totals line", files[len(files)-1])
}

func dumpNumber(name string) int {
	n, _ := strconv.Atoi(name[strings.LastIndex(name, ".")+1:])
	return n
}
