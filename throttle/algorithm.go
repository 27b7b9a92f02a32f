package throttle

import (
	_ "embed"
	"fmt"

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

func (a Algorithm) String() string {
	switch a {
	case TokenBucket:
		return "token-bucket"
	case FixedWindow:
		return "fixed-window"
	case SlidingWindow:
		return "sliding-window"
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// ParseAlgorithm returns the algorithm named by s ("token-bucket",
// "fixed-window" or "sliding-window").
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range []Algorithm{TokenBucket, FixedWindow, SlidingWindow} {
		if a.String() == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("throttle: unknown algorithm %q (use token-bucket, fixed-window or sliding-window)", s)
}

var (
	//go:embed lua/common.lua
	commonLua string
	//go:embed lua/decide.lua
	decideLua string
	//go:embed lua/hold.lua
	holdLua string
	//go:embed lua/tokenbucket.lua
	tokenBucketLua string
	//go:embed lua/fixedwindow.lua
	fixedWindowLua string
	//go:embed lua/slidingwindow.lua
	slidingWindowLua string
	//go:embed lua/lean.lua
	leanLua string
	//go:embed lua/dropcache.lua
	dropCacheLua string
	//go:embed lua/policy.lua
	policyLua string
	//go:embed lua/ticket.lua
	ticketLua string
)

// algoScript is an algorithm's decision script, loaded once per process.
type algoScript struct {
	short  string // the state key's kind
	books  bool   // books future tokens (reservations, tickets)
	decide *redis.Script
}

var (
	scripts = map[Algorithm]*algoScript{
		TokenBucket:   {short: "tb", books: true, decide: redis.NewScript(commonLua + tokenBucketLua + decideLua)},
		FixedWindow:   {short: "fw", decide: redis.NewScript(commonLua + fixedWindowLua + decideLua)},
		SlidingWindow: {short: "sw", decide: redis.NewScript(commonLua + slidingWindowLua + decideLua)},
	}
	holdScript = redis.NewScript(commonLua + dropCacheLua + holdLua)
	// leanScript decides one or more single-id token-bucket calls.
	leanScript   = redis.NewScript(leanLua)
	policyScript = redis.NewScript(commonLua + dropCacheLua + policyLua)
	ticketScript = redis.NewScript(dropCacheLua + ticketLua)
)

func (a Algorithm) script() *algoScript {
	if s, ok := scripts[a]; ok {
		return s
	}
	return scripts[TokenBucket]
}
