package throttle

import (
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Algorithm chooses how a Limiter counts.
type Algorithm int

const (
	// TokenBucket refills Burst tokens at Rate per second; one key per busy
	// tenant, which expires once the bucket would be full. Reservations book
	// future tokens. The default.
	TokenBucket Algorithm = iota
	// FixedWindow admits Burst per window of Burst/Rate seconds with INCR and
	// EXPIRE. It admits up to 2x Burst around a window edge.
	FixedWindow
	// SlidingWindow keeps a log of admissions in a sorted set and admits at
	// most Burst in any window of Burst/Rate seconds. Exact, but it costs
	// memory per request: up to Burst members per busy tenant.
	SlidingWindow
)

// algorithms is every algorithm, one entry each: adding one adds an entry
// here and its Lua file (an algo table as in lua/tokenbucket.lua).
var algorithms = []*algorithm{
	TokenBucket: {name: "token-bucket", short: "tb", books: true, lua: tokenBucketLua,
		summary: "books future slots: throttled tasks come back exactly when due"},
	FixedWindow: {name: "fixed-window", short: "fw", lua: fixedWindowLua,
		summary: "cheap; up to 2x the burst around a window's edge"},
	SlidingWindow: {name: "sliding-window", short: "sw", lua: slidingWindowLua,
		summary: "exact, one entry per admission in Redis"},
}

// algorithm is what a Limiter needs of its Algorithm.
type algorithm struct {
	name  string
	short string // the kind of its state key: "<prefix>:{<id>}:<short>"
	books bool   // books future tokens (reservations, tickets, leases)
	lua   string
	// summary says in a few words what it is for, for a --help
	summary string
	// decide is common.lua + lua + decide.lua as a script (EVALSHA), and
	// lib the same as a Redis function library that registers fn (see
	// function.go)
	decide  *redis.Script
	lib, fn string
}

func init() {
	for _, a := range algorithms {
		src := commonLua + a.lua + decideLua
		a.decide = redis.NewScript(src + "\nreturn decide_all(KEYS, ARGV)\n")
		// named by its code, so that two versions of quotaq (a rolling
		// upgrade) each call their own
		sum := sha1.Sum([]byte(src))
		a.fn = "quotaq_" + a.short + "_" + hex.EncodeToString(sum[:6])
		a.lib = "#!lua name=" + a.fn + "\n" + src + "\nredis.register_function('" + a.fn + "', decide_all)\n"
	}
}

// Algorithms returns every algorithm.
func Algorithms() []Algorithm {
	out := make([]Algorithm, len(algorithms))
	for i := range algorithms {
		out[i] = Algorithm(i)
	}
	return out
}

func (a Algorithm) String() string {
	if a >= 0 && int(a) < len(algorithms) {
		return algorithms[a].name
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// Summary says in a few words what a is for.
func (a Algorithm) Summary() string {
	if a >= 0 && int(a) < len(algorithms) {
		return algorithms[a].summary
	}
	return ""
}

// ParseAlgorithm returns the algorithm named by s ("token-bucket",
// "fixed-window" or "sliding-window").
func ParseAlgorithm(s string) (Algorithm, error) {
	var names []string
	for _, a := range Algorithms() {
		if a.String() == s {
			return a, nil
		}
		names = append(names, a.String())
	}
	return 0, fmt.Errorf("throttle: unknown algorithm %q (use %s)", s, strings.Join(names, ", "))
}

func (a Algorithm) script() *algorithm {
	if a >= 0 && int(a) < len(algorithms) {
		return algorithms[a]
	}
	return algorithms[TokenBucket]
}

var (
	//go:embed lua/common.lua
	commonLua string
	//go:embed lua/decide.lua
	decideLua string
	//go:embed lua/tokenbucket.lua
	tokenBucketLua string
	//go:embed lua/fixedwindow.lua
	fixedWindowLua string
	//go:embed lua/slidingwindow.lua
	slidingWindowLua string
	//go:embed lua/hold.lua
	holdLua string
	//go:embed lua/unhold.lua
	unholdLua string
	//go:embed lua/policy.lua
	policyLua string
	//go:embed lua/ticket.lua
	ticketLua string
	//go:embed lua/slots.lua
	slotsLua string
	//go:embed lua/standing.lua
	standingLua string
)

// The scripts that change an id's policy or aux hash without deciding.
var (
	holdScript     = changeScript(holdLua)
	policyScript   = changeScript(policyLua)
	unholdScript   = changeScript(unholdLua)
	ticketScript   = changeScript(ticketLua)
	slotsScript    = redis.NewScript(commonLua + slotsLua)
	standingScript = redis.NewScript(commonLua + standingLua)
)

// changeScript builds a script that changes an id's policy or aux hash:
// src, which takes the id's token bucket state as KEYS[1], then
// drop_cache(KEYS[1]), so that the next decision reads what src changed
// instead of what the state caches (see lua/tokenbucket.lua).
func changeScript(src string) *redis.Script {
	return redis.NewScript(commonLua + tokenBucketLua +
		"local function change()\n" + src + "\nend\nlocal changed = change()\ndrop_cache(KEYS[1])\nreturn changed\n")
}
