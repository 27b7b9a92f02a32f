// Package httplimit is net/http middleware that limits how many requests a
// client may make, on quotaq's Redis limiter (package throttle): every
// server process that shares the Redis shares the limits.
//
// By default a client is its IP address and may make 10 requests in any 10
// seconds (a sliding window: the 11th request within 10 seconds of the first
// is refused, whatever the spacing). Every answer carries the client's
// standing:
//
//	X-RateLimit-Limit: 10          requests allowed per window
//	X-RateLimit-Remaining: 7       requests left now
//	X-RateLimit-Reset: 9           seconds until the full limit is back
//	RateLimit-Policy: "default";q=10;w=10
//	RateLimit: "default";r=7;t=9
//
// RateLimit and RateLimit-Policy are the fields of the IETF draft
// draft-ietf-httpapi-ratelimit-headers (revision 10): structured-field lists
// with one item per policy, "default" for the rate limit and "quota" for a
// period quota when the policy has one. A refused request is answered 429
// Too Many Requests with Retry-After (seconds), and the RateLimit reset
// parameter t then equals Retry-After, as the draft asks.
//
// Who a client is comes from KeyFuncs, tried in order until one names it:
// ClientIP (the connection's address), ForwardedFor (the address a trusted
// reverse proxy reports in X-Forwarded-For; opt-in, because anyone can send
// that header), ValidAPIKey (a request header the application checks, stored
// hashed; APIKey believes any value, so random keys escape a per-address
// limit), or any function of the request. IPv6 addresses are grouped by
// their /64 (WithIPv6Prefix).
//
// A refused client is refused by the process itself, without asking Redis,
// until its Retry-After (for at most a second by default: WithRefusalCache),
// so a client hammering past its limit costs Redis no decision scripts.
//
// When Redis cannot be reached the middleware fails closed (503 Service
// Unavailable) unless WithFailOpen(true) lets requests through unlimited.
package httplimit
