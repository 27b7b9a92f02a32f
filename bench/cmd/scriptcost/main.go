// Command scriptcost splits the Redis CPU of one quotaq decision into its
// parts: it runs variants of the decision script (the whole script, only its
// function definitions, only its redis.call()s) next to redis_rate's GCRA
// script and a trivial one, one caller, and prints INFO commandstats'
// µs per call for each.
//
//	cd bench && go run ./cmd/scriptcost -calls 20000
package main

import (
	"context"
	"flag"
	"fmt"
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
	flag.Parse()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(*lua, name))
		if err != nil {
			fmt.Fprintln(os.Stderr, "scriptcost:", err, "(run from bench/ or give -lua)")
			os.Exit(2)
		}
		return string(b)
	}
	common, tb, decide := read("common.lua"), read("tokenbucket.lua"), read("decide.lua")
	// quotaq's keys and arguments: policy, state, quota, aux; allow 1 token,
	// default policy 1e6/s burst 1e6
	qkeys := []string{"q:{t}:policy", "q:{t}:tb", "q:{t}:quota", "q:{t}:aux"}
	qargs := []any{"allow", 1, 0, "", 1000, 1000000, 0, 0}
	type variant struct {
		name string
		src  string
		keys []string
		args []any
	}
	variants := []variant{
		{"trivial: return 1", "return 1", []string{"k"}, nil},
		{"redis_rate v10 GCRA (TIME, GET, SET)", redisRateLua, []string{"rr:t"}, []any{1000000, 1000000, 1, 1}},
		{"quotaq decision, whole", common + tb + decide, qkeys, qargs},
		{"quotaq: function definitions only", common + tb + "\nreturn 1", qkeys, qargs},
		{"quotaq: its 5 redis.call()s only", callsOnly, qkeys, qargs},
		{"sketch: lean single-id token bucket (TIME, HMGET policy, GET, SET)", leanLua, qkeys, []any{1, 1000, 1000000, 0, 0}},
	}
	ctx := context.Background()
	srv, err := harness.StartServer(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scriptcost:", err)
		os.Exit(1)
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1})
	defer rdb.Close()
	sum := make([]float64, len(variants))
	for range *rounds {
		for i, v := range variants {
			s := redis.NewScript(v.src)
			if err := s.Load(ctx, rdb).Err(); err != nil {
				fmt.Fprintln(os.Stderr, "scriptcost:", v.name, err)
				os.Exit(1)
			}
			_ = harness.ResetStats(ctx, rdb)
			for range *calls {
				if err := s.EvalSha(ctx, rdb, v.keys, v.args...).Err(); err != nil && err != redis.Nil {
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
			sum[i] += float64(us) / float64(n)
		}
	}
	fmt.Printf("redis-server %s, %d calls x %d rounds per variant, one caller, %s, %s\n\n",
		harness.Version(ctx, rdb), *calls, *rounds, harness.Load(), time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| script | µs per call (INFO commandstats) |")
	fmt.Println("|---|---:|")
	for i, v := range variants {
		fmt.Printf("| %s | %s |\n", v.name, strconv.FormatFloat(sum[i]/float64(*rounds), 'f', 1, 64))
	}
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

// leanLua sketches what a decision for one id without a ticket could cost:
// the same token bucket (backlog:last:interval), the policy read from its
// hash, a pause folded into the backlog by Hold instead of kept in the aux
// hash, the quota hash read only when the policy has a quota, no tables, no
// closures. It is a measurement aid, not quotaq's script.
//
// KEYS[1] policy hash, KEYS[2] state, KEYS[3] quota hash
// ARGV[1] n, ARGV[2..5] default interval_ns, burst, quota, quota_period_us
// Returns {allowed, remaining, wait_us}
const leanLua = `
local tm = redis.call('TIME')
local now = tm[1] * 1000000 + tm[2]
local n = tonumber(ARGV[1])
local t, b, q = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local p = redis.call('HMGET', KEYS[1], 't', 'b', 'q', 'qp')
if p[1] then t, b, q = tonumber(p[1]), tonumber(p[2]), tonumber(p[3]) or 0 end
local backlog = 0
local v = redis.call('GET', KEYS[2])
if v then
  local bl, last, was = string.match(v, '^(%d+):(%d+):?(%d*)$')
  backlog = tonumber(bl) - (now - tonumber(last)) * 1000
  if backlog < 0 then backlog = 0 end
  was = tonumber(was)
  if was and was ~= t and was > 0 then backlog = math.ceil(backlog / was * t) end
end
local wait = backlog + (n - b) * t
if n > b then return {0, 0, -1} end
if q > 0 then
  local used = tonumber(redis.call('HGET', KEYS[3], 'used') or '0')
  if used + n > q then return {0, 0, -1} end
end
if wait > 0 then
  return {0, math.floor((b * t - backlog) / t), math.ceil(wait / 1000)}
end
backlog = backlog + n * t
redis.call('SET', KEYS[2], string.format('%d:%d:%d', backlog, now, t), 'PX', math.ceil(backlog / 1000000))
return {1, math.floor((b * t - backlog) / t), 0}
`
