// Package harness is the plumbing the benchmarks share: a redis-server of
// their own, the server's counters (INFO commandstats, INFO cpu), concurrent
// callers for a fixed time with their latencies, and the machine's load.
package harness

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
)

// Server is the redis-server a run measures on.
type Server struct {
	Addr string
	stop func()
}

// StartServer starts a private redis-server on a free loopback port, or
// uses addr when it is given.
func StartServer(addr string) (*Server, error) {
	if addr != "" {
		return &Server{Addr: addr, stop: func() {}}, nil
	}
	dir, err := os.MkdirTemp("", "quotaq-bench-")
	if err != nil {
		return nil, err
	}
	s, err := redistest.Start(dir)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return &Server{Addr: s.Addr, stop: func() { s.Stop(); _ = os.RemoveAll(dir) }}, nil
}

// Stop stops a server this run started.
func (s *Server) Stop() { s.stop() }

// Version returns the server's redis_version.
func Version(ctx context.Context, c redis.UniversalClient) string {
	info, _ := c.Info(ctx, "server").Result()
	return field(info, "redis_version")
}

// Counters is what the server has spent since the last ResetStats.
type Counters struct {
	Calls   map[string]int64 // per command (lower case): calls
	Usec    map[string]int64 // per command: µs inside the command
	CPUUsec int64            // the server process's user+sys CPU, µs (since start)
}

// ResetStats zeroes the server's command statistics.
func ResetStats(ctx context.Context, c redis.UniversalClient) error {
	return c.ConfigResetStat(ctx).Err()
}

// ReadCounters reads INFO commandstats and INFO cpu.
func ReadCounters(ctx context.Context, c redis.UniversalClient) (Counters, error) {
	info, err := c.Info(ctx, "commandstats", "cpu").Result()
	if err != nil {
		return Counters{}, fmt.Errorf("bench: INFO: %w", err)
	}
	k := Counters{Calls: map[string]int64{}, Usec: map[string]int64{}}
	for _, line := range strings.Split(info, "\r\n") {
		if name, rest, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(name, "cmdstat_") {
			cmd := strings.TrimPrefix(name, "cmdstat_")
			for _, kv := range strings.Split(rest, ",") {
				key, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				switch key {
				case "calls":
					k.Calls[cmd] = n
				case "usec":
					k.Usec[cmd] = n
				}
			}
		}
	}
	cpu := func(f string) int64 {
		v, _ := strconv.ParseFloat(field(info, f), 64)
		return int64(v * 1e6)
	}
	k.CPUUsec = cpu("used_cpu_user") + cpu("used_cpu_sys")
	return k, nil
}

// Scripts returns the script calls and the µs they took (EVALSHA, EVAL and
// FCALL: a Redis function).
func (k Counters) Scripts() (calls, usec int64) {
	return k.Calls["evalsha"] + k.Calls["eval"] + k.Calls["fcall"], k.Usec["evalsha"] + k.Usec["eval"] + k.Usec["fcall"]
}

// AllCalls returns the calls of every command.
func (k Counters) AllCalls() int64 {
	var n int64
	for _, c := range k.Calls {
		n += c
	}
	return n
}

func field(info, name string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}

// Outcome is what concurrent callers did in a run.
type Outcome struct {
	Calls    int64
	Allowed  int64
	Errors   int64
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// PerSecond returns calls per second.
func (o Outcome) PerSecond() float64 { return float64(o.Calls) / o.Elapsed.Seconds() }

// Run calls fn from callers goroutines for d and measures each call. fn
// gets the caller's index and its call number, and reports whether the
// decision admitted.
func Run(ctx context.Context, callers int, d time.Duration, fn func(ctx context.Context, caller, i int) (bool, error)) Outcome {
	var (
		wg      sync.WaitGroup
		stop    atomic.Bool
		allowed atomic.Int64
		errs    atomic.Int64
		mu      sync.Mutex
		all     []time.Duration
	)
	start := time.Now()
	for g := range callers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<14)
			var ok, bad int64
			for i := 0; !stop.Load(); i++ {
				t := time.Now()
				a, err := fn(ctx, g, i)
				lat = append(lat, time.Since(t))
				if err != nil {
					bad++
				} else if a {
					ok++
				}
			}
			allowed.Add(ok)
			errs.Add(bad)
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	o := Outcome{Calls: int64(len(all)), Allowed: allowed.Load(), Errors: errs.Load(), Elapsed: elapsed}
	if len(all) > 0 {
		o.P50 = all[len(all)*50/100]
		o.P99 = all[len(all)*99/100]
	}
	return o
}

// Load returns the machine's load averages and core count, for the notes.
func Load() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return fmt.Sprintf("%d cores", runtime.NumCPU())
	}
	f := strings.Fields(string(b))
	return fmt.Sprintf("load average %s %s %s on %d cores", f[0], f[1], f[2], runtime.NumCPU())
}

// Micros renders d in whole µs ("<1" below one).
func Micros(d time.Duration) string {
	if d < time.Microsecond {
		return "<1"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64)
}
