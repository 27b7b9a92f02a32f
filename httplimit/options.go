package httplimit

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// Option configures a Middleware.
type Option func(*Middleware)

// WithPolicy sets the limit of every client that has no policy of its own.
// Default: 10 requests in any 10 seconds, throttle.Policy{Rate: 1, Burst:
// 10}, like the classic "10 requests per 10 seconds per IP". Burst is the
// number of requests in a window of Burst/Rate seconds; a Quota adds a
// period quota (e.g. 10000 a day).
func WithPolicy(p throttle.Policy) Option {
	return func(m *Middleware) { m.policy = p }
}

// WithAlgorithm sets how requests are counted. Default throttle.SlidingWindow:
// exactly Burst requests in any window, one sorted-set member per request in
// the window. throttle.TokenBucket costs one small key per client and lets
// requests through evenly once the burst is spent; throttle.FixedWindow is
// the cheapest and admits up to twice Burst around a window edge.
func WithAlgorithm(a throttle.Algorithm) Option {
	return func(m *Middleware) { m.algo = a }
}

// WithPrefix sets the prefix of the Redis keys. Default "quotaq-http", apart
// from the job limiter's "quotaq" so HTTP clients and job tenants never share
// a limit by accident.
func WithPrefix(prefix string) Option {
	return func(m *Middleware) { m.prefix = prefix }
}

// WithKey sets who a client is: the KeyFuncs are tried in order and the
// first non-empty key is the client's. Default ClientIP(). For example,
// WithKey(ValidAPIKey("X-API-Key", valid), ClientIP()) limits per API key
// the keys valid accepts, and other requests per address. (With APIKey
// instead, random made-up keys each get a fresh limit: see APIKey.)
func WithKey(keys ...KeyFunc) Option {
	return func(m *Middleware) { m.keys = keys }
}

// DefaultIPv6Prefix is the prefix length by which the Middleware groups
// IPv6 client addresses: one /64 is one household or one server, which can
// pick a new address in it for every request.
const DefaultIPv6Prefix = 64

// WithIPv6Prefix sets how IPv6 client addresses (keys "ip:<IPv6 address>",
// from ClientIP, ForwardedFor or a KeyFunc of your own) are grouped: all the
// addresses of one /bits prefix share one limit, keyed
// "ip:2001:db8:1:2::/64". 128 limits each address on its own. Default
// DefaultIPv6Prefix (64). IPv4 addresses are never grouped.
func WithIPv6Prefix(bits int) Option {
	return func(m *Middleware) { m.v6bits = bits }
}

// WithFailOpen sets what happens when Redis cannot be reached: true lets the
// request through, unlimited and without rate-limit headers; false answers
// 503 Service Unavailable. Either way the error is logged. Default false:
// fail closed.
func WithFailOpen(open bool) Option {
	return func(m *Middleware) { m.failOpen = open }
}

// WithPolicyLookup sets whether every request reads its client's policy, so
// that clients given their own with Limiter().SetPolicy (a paid API key, a
// partner's address) are described correctly in the headers. It costs one
// more Redis round trip a request. With false, the headers describe the
// default policy, which is read at most once a second. Default true.
func WithPolicyLookup(on bool) Option {
	return func(m *Middleware) { m.lookup = on }
}

// WithDenied sets the handler of refused requests. It is called after the
// status headers (Retry-After, RateLimit, ...) are set and must write the
// status itself; Result(r.Context()) tells why. Default: 429 Too Many
// Requests with a one-line text body.
func WithDenied(h http.Handler) Option {
	return func(m *Middleware) { m.denied = h }
}

// WithLogger sets where Redis errors are logged; nil discards them. Default
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(m *Middleware) { m.log = l }
}

// WithRefusalCache sets how long, at most, a refused client is refused by
// this process without asking Redis: until its Retry-After, or max if
// sooner. A client hammering past its limit then costs Redis no decision
// script until it may be admitted again. The trade-off: Limiter().Reset or
// SetPolicy made in another process reaches such a client here at most max
// later (made through this Middleware's Limiter, at once). Default
// DefaultRefusalCache (1 s); 0 turns it off (every request asks Redis).
func WithRefusalCache(max time.Duration) Option {
	return func(m *Middleware) { m.refusals = max }
}

// DefaultRefusalCache is how long a refused client is refused locally at
// most, by default (see WithRefusalCache).
const DefaultRefusalCache = time.Second
