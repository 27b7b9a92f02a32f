// Command scriptcost splits the Redis CPU of one quotaq decision into its
// parts: it runs variants of the decision script (the whole script, only its
// function definitions, only its redis.call()s) next to redis_rate's GCRA
// script and a trivial one, one caller, and prints INFO commandstats'
// µs per call for each.
//
// With -instructions it counts instead the CPU instructions redis-server
// executes per decision, under valgrind's callgrind (installed separately:
// apt install valgrind): the same on every run and every machine of the
// same build, where timings vary by a few percent from run to run.
//
//	cd bench && go run ./cmd/scriptcost -calls 20000
//	cd bench && go run ./cmd/scriptcost -instructions -calls 2000
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
)

func main() {
	calls := flag.Int("calls", 20000, "calls per variant and round")
	rounds := flag.Int("rounds", 3, "rounds (variants interleaved)")
	lua := flag.String("lua", "../throttle/lua", "directory of quotaq's Lua files")
	addr := flag.String("addr", "", "use this redis-server instead of starting one")
	instructions := flag.Bool("instructions", false, "count redis-server's instructions per call under valgrind's callgrind instead of timing")
	flag.Parse()
	vs, err := variants(*lua)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scriptcost:", err, "(run from bench/ or give -lua)")
		os.Exit(2)
	}
	ctx := context.Background()
	if *instructions {
		if err := countInstructions(ctx, vs, *calls); err != nil {
			fmt.Fprintln(os.Stderr, "scriptcost:", err)
			os.Exit(1)
		}
		return
	}
	srv, err := harness.StartServer(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scriptcost:", err)
		os.Exit(1)
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1})
	defer rdb.Close()
	if err := rdb.HSet(ctx, "q:{o}:policy", "t", 1000, "b", 1000000, "q", 0, "qp", 0).Err(); err != nil {
		fmt.Fprintln(os.Stderr, "scriptcost:", err)
		os.Exit(1)
	}
	sum := make([]float64, len(vs))
	for range *rounds {
		for i, v := range vs {
			run, err := v.load(ctx, rdb)
			if err != nil {
				fmt.Fprintln(os.Stderr, "scriptcost:", v.name, err)
				os.Exit(1)
			}
			_ = harness.ResetStats(ctx, rdb)
			for range *calls {
				if err := run().Err(); err != nil && err != redis.Nil {
					fmt.Fprintln(os.Stderr, "scriptcost:", v.name, err)
					os.Exit(1)
				}
			}
			k, err := harness.ReadCounters(ctx, rdb)
			if err != nil {
				fmt.Fprintln(os.Stderr, "scriptcost:", err)
				os.Exit(1)
			}
			n, us := k.Scripts()
			sum[i] += float64(us) / float64(n) / float64(max(1, len(v.keys)/5))
		}
	}
	fmt.Printf("redis-server %s, %d calls x %d rounds per variant, one caller, %s, %s\n\n",
		harness.Version(ctx, rdb), *calls, *rounds, harness.Load(), time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| script | µs per call (INFO commandstats) |")
	fmt.Println("|---|---:|")
	for i, v := range vs {
		fmt.Printf("| %s | %s |\n", v.name, strconv.FormatFloat(sum[i]/float64(*rounds), 'f', 1, 64))
	}
}

// variant is one script to measure, with its keys and arguments.
type variant struct {
	name string
	src  string // a script, or a function library registering fn
	keys []string
	args []any
	fn   string
}

// variants returns the scripts to compare, with quotaq's read from the Lua
// files in dir.
func variants(dir string) ([]variant, error) {
	src := map[string]string{}
	for _, name := range []string{"common.lua", "tokenbucket.lua", "decide.lua"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		src[name] = string(b)
	}
	defs := src["common.lua"] + src["tokenbucket.lua"]
	// the decisions as quotaq runs them: a Redis function where the server
	// has them (Redis 7), else the same Lua as a script
	decide := defs + src["decide.lua"] + "\nreturn decide_all(KEYS, ARGV)\n"
	lib := "#!lua name=qcost\n" + defs + src["decide.lua"] + "\nredis.register_function('qcost', decide_all)\n"
	// a tenant with its own policy (stored by setup)
	okeys := []string{"q:{o}:policy", "q:{o}:tb", "q:{o}:quota", "q:{o}:aux", "q:{o}:slots"}
	// The names say what a row measures, not which file does it:
	// beforeafter matches rows by name across versions of the scripts, so
	// a rewrite keeps a name and its meaning and changes only the source.
	return []variant{
		{name: "trivial: return 1", src: "return 1", keys: []string{"k"}},
		{name: "redis_rate v10 GCRA (TIME, GET, SET)", src: redisRateLua, keys: []string{"rr:t"}, args: []any{1000000, 1000000, 1, 1}},
		{name: "quotaq decision script: function definitions only", src: defs + "\nreturn 1", keys: tenantKeys(1), args: decideArgs(1)},
		{name: "redis.call()s of a decision with a stored policy, alone (TIME, HMGET, GET, HMGET, SET)", src: callsOnly, keys: tenantKeys(1), args: decideArgs(1)},
		{name: "quotaq, one decision, default policy, active tenant", src: lib, keys: tenantKeys(1), args: decideArgs(1), fn: "qcost"},
		{name: "quotaq, one decision, the tenant's own policy", src: lib, keys: okeys, args: decideArgs(1), fn: "qcost"},
		{name: "quotaq, 16 decisions (16 tenants) in one run, per decision", src: lib, keys: tenantKeys(16), args: decideArgs(16), fn: "qcost"},
		{name: "quotaq, one decision, default policy, active tenant, as a script (EVALSHA: Redis 6, no function rights)", src: decide, keys: tenantKeys(1), args: decideArgs(1)},
		{name: "quotaq, 16 decisions in one run as a script, per decision", src: decide, keys: tenantKeys(16), args: decideArgs(16)},
	}, nil
}

// load puts v's code on the server and returns a run of it.
func (v variant) load(ctx context.Context, rdb *redis.Client) (func() *redis.Cmd, error) {
	if v.fn != "" {
		if err := rdb.FunctionLoadReplace(ctx, v.src).Err(); err != nil {
			return nil, err
		}
		return func() *redis.Cmd { return rdb.FCall(ctx, v.fn, v.keys, v.args...) }, nil
	}
	s := redis.NewScript(v.src)
	if err := s.Load(ctx, rdb).Err(); err != nil {
		return nil, err
	}
	return func() *redis.Cmd { return s.EvalSha(ctx, rdb, v.keys, v.args...) }, nil
}

// callsOnly makes the Redis calls of a token-bucket decision with a stored
// policy and nothing else: TIME, HMGET policy, GET state, HMGET aux, SET state.
const callsOnly = `
local t = redis.call('TIME')
local p = redis.call('HMGET', KEYS[1], 't', 'b', 'q', 'qp')
local v = redis.call('GET', KEYS[2])
local a = redis.call('HMGET', KEYS[4], 'h', 'k:')
redis.call('SET', KEYS[2], '1000:1763800000000000:1000', 'PX', 1)
return 1
`

// redisRateLua is go-redis/redis_rate v10's allowN script, for comparison
// under the same harness (its source: lua.go in that module).
const redisRateLua = `
redis.replicate_commands()
local rate_limit_key = KEYS[1]
local burst = ARGV[1]
local rate = ARGV[2]
local period = ARGV[3]
local cost = tonumber(ARGV[4])
local emission_interval = period / rate
local increment = emission_interval * cost
local burst_offset = emission_interval * burst
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local tat = redis.call("GET", rate_limit_key)
if not tat then
  tat = now
else
  tat = tonumber(tat)
end
tat = math.max(tat, now)
local new_tat = tat + increment
local allow_at = new_tat - burst_offset
local diff = now - allow_at
local remaining = diff / emission_interval
if remaining < 0 then
  local reset_after = tat - now
  local retry_after = diff * -1
  return {0, 0, tostring(retry_after), tostring(reset_after)}
end
local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", rate_limit_key, new_tat, "EX", math.ceil(reset_after))
end
local retry_after = -1
return {cost, remaining, tostring(retry_after), tostring(reset_after)}
`

// tenantKeys returns the keys of k tenants' decisions: policy, state,
// quota, aux each.
func tenantKeys(k int) []string {
	var ks []string
	for i := range k {
		t := "q:{t" + strconv.Itoa(i) + "}:"
		ks = append(ks, t+"policy", t+"tb", t+"quota", t+"aux", t+"slots")
	}
	return ks
}

// decideArgs returns decide.lua's arguments, as the Limiter sends them, for
// k decisions that allow 1 token each under the default policy 1e6/s burst
// 1e6 (interval 1000 ns), without leases or learning: the settings record,
// then mode, ticket, slot and a record of numbers per decision (see
// throttle/lua/decide.lua).
func decideArgs(k int) []any {
	args := []any{record(1000, 1000000, 0, 0, 0, 0, 0, 0)}
	for range k {
		args = append(args, "allow", "", "", record(1, 1))
	}
	return args
}

// record packs v as little-endian doubles, as throttle does.
func record(v ...int64) string {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(float64(x)))
	}
	return string(b)
}
