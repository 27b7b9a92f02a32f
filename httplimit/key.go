package httplimit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/quotaq/quotaq/throttle"
)

// A KeyFunc names the client a request comes from: requests with the same
// key share one limit. It returns "" when it cannot tell, and the middleware
// asks the next KeyFunc (see WithKey). Requests that no KeyFunc names share
// the key AnonymousKey.
//
// A key may be any string: keys that the limiter cannot store as they are
// (longer than throttle.MaxTenantLen bytes, invalid UTF-8, control
// characters) are replaced by their SHA-256, so distinct keys keep distinct
// limits and no key makes a request fail.
type KeyFunc func(r *http.Request) string

// AnonymousKey is the key of requests that no KeyFunc names.
const AnonymousKey = "anonymous"

// ClientIP keys a request by the IP address of the connection it came on
// (http.Request.RemoteAddr), as "ip:<address>"; the Middleware groups IPv6
// addresses by their /64 (WithIPv6Prefix). Behind a reverse proxy every
// request comes from the proxy: use ForwardedFor then. Requests whose
// RemoteAddr holds no IP address (a Unix socket) share the key "ip:unknown".
func ClientIP() KeyFunc {
	return func(r *http.Request) string {
		if a, ok := remoteIP(r); ok {
			return "ip:" + a.String()
		}
		return "ip:unknown"
	}
}

// ForwardedFor keys a request by the client address that trusted reverse
// proxies report in X-Forwarded-For, as "ip:<address>"; the Middleware
// groups IPv6 addresses by their /64 (WithIPv6Prefix).
//
// Any client can send X-Forwarded-For, so the header is only believed when
// the connection comes from a trusted proxy, and only as far as the proxies
// that appended to it are trusted: the addresses are read from the right
// (the nearest hop) and the first one not in trusted is the client. A
// request that does not come from a trusted proxy is keyed by its connection
// address, as ClientIP does, whatever its header says. Give every proxy in
// front of the server, e.g. ParsePrefixes("10.0.0.0/8").
func ForwardedFor(trusted ...netip.Prefix) KeyFunc {
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return func(r *http.Request) string {
		peer, ok := remoteIP(r)
		if !ok {
			return "ip:unknown"
		}
		client := peer
		if isTrusted(peer) {
			client = forwardedClient(r.Header.Values("X-Forwarded-For"), peer, isTrusted)
		}
		return "ip:" + client.String()
	}
}

// forwardedClient walks the X-Forwarded-For hops from the nearest one back:
// the first address that is not a trusted proxy is the client. A hop that is
// not an address (only a client can have written it, trusted proxies write
// addresses) ends the walk at the last address read. When every hop is
// trusted, the farthest is the client.
func forwardedClient(values []string, peer netip.Addr, isTrusted func(netip.Addr) bool) netip.Addr {
	var hops []string
	for _, v := range values {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			return client
		}
		client = a
		if !isTrusted(a) {
			return a
		}
	}
	return client
}

// parseHop parses one X-Forwarded-For entry: an address, possibly with a
// port ("1.2.3.4:5678", "[2001:db8::1]:443") or in brackets.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// remoteIP is the IP address of the request's connection.
func remoteIP(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes and single
// addresses ("10.0.0.0/8, 192.168.1.7, ::1"), for ForwardedFor's trusted
// proxies from a flag or an environment variable. An empty string is no
// prefix.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("httplimit: trusted proxy %q is neither an address nor a CIDR prefix (e.g. 10.0.0.0/8)", f)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// APIKey keys a request by the value of header (e.g. "X-API-Key"), as
// APIKeyID(value): the key itself is never written to Redis, only its hash.
// Requests without the header are left to the next KeyFunc.
//
// APIKey believes any value. A client that sends a new made-up key with each
// request gets a fresh limit each time, so WithKey(APIKey(h), ClientIP())
// limits nobody who wants to escape: use APIKey only when the requests that
// reach the middleware have already had their key checked (an
// authentication handler in front of it that rejects unknown keys).
// Otherwise use ValidAPIKey.
func APIKey(header string) KeyFunc {
	return func(r *http.Request) string {
		v := strings.TrimSpace(r.Header.Get(header))
		if v == "" {
			return ""
		}
		return APIKeyID(v)
	}
}

// ValidAPIKey keys a request by the API key in header, as APIKey does, but
// only when valid reports that the key is one the application gave out.
// Requests without a key, or with one valid refuses, are left to the next
// KeyFunc: WithKey(ValidAPIKey(h, valid), ClientIP()) limits made-up keys
// per client address, together with the requests that carry none. valid is
// called on every request that carries the header; make it cheap (a cache
// in front of the key store).
func ValidAPIKey(header string, valid func(r *http.Request, apiKey string) bool) KeyFunc {
	return func(r *http.Request) string {
		v := strings.TrimSpace(r.Header.Get(header))
		if v == "" || !valid(r, v) {
			return ""
		}
		return APIKeyID(v)
	}
}

// APIKeyID is the key APIKey gives a request carrying the API key apiKey:
// "key:" and the hex SHA-256 of apiKey. Use it to give one API key its own
// policy: m.Limiter().SetPolicy(ctx, httplimit.APIKeyID(k), p).
func APIKeyID(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return "key:" + hex.EncodeToString(sum[:])
}

// groupIPv6 returns key, or when key is "ip:" and an IPv6 address, "ip:"
// and the address's prefix of the given bits ("ip:2001:db8:1:2::/64").
func groupIPv6(key string, bits int) string {
	rest, ok := strings.CutPrefix(key, "ip:")
	if !ok || bits >= 128 {
		return key
	}
	a, err := netip.ParseAddr(rest)
	if err != nil || !a.Is6() || a.Is4In6() {
		return key
	}
	p, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return key
	}
	return "ip:" + p.String()
}

// storable returns key, or, when the limiter cannot store it as it is, a
// hash of it that it can.
func storable(key string) string {
	if throttle.ValidateTenant(key) == nil {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}
