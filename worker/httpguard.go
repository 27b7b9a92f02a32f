package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// AllowList says which hosts http:call tasks may reach. Its payloads come
// from whoever can enqueue, so the handler checks every request, every
// redirect and every address it dials (after name resolution, so a name
// that resolves to a refused address is refused too).
//
// Entries are host names ("api.example.com"), wildcards covering the
// subdomains of a name ("*.example.com"), IP addresses ("203.0.113.9") and
// CIDR blocks ("10.0.0.0/8", "2001:db8::/32"). A name entry admits the
// addresses it resolves to, except the denied ones below; an IP or CIDR
// entry admits its addresses, even denied ones.
//
// Denied unless an IP or CIDR entry names them, with or without an allow
// list: link-local addresses (169.254.0.0/16, fe80::/10), where the cloud
// metadata services live (169.254.169.254, 169.254.170.2), the other cloud
// metadata and platform addresses (fd00:ec2::254, 100.100.100.200,
// 168.63.129.16) and the unspecified addresses (0.0.0.0/8, ::), which reach
// the local host.
//
// The zero AllowList (and nil) allows every other host, loopback and
// private networks included: give one in production. Behind an HTTP proxy
// (HTTP_PROXY), list the proxy too: the handler then dials only the proxy,
// and checks the target's name and IP literal, not what the proxy resolves.
type AllowList struct {
	names    map[string]bool // exact host names, lower case
	suffixes []string        // ".example.com" for "*.example.com"
	prefixes []netip.Prefix  // IP and CIDR entries
}

// deniedPrefixes are refused unless an IP or CIDR entry allows them.
var deniedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),      // IPv4 link-local: AWS, GCP, Azure, OpenStack metadata
	netip.MustParsePrefix("fe80::/10"),           // IPv6 link-local
	netip.MustParsePrefix("fd00:ec2::254/128"),   // AWS instance metadata over IPv6
	netip.MustParsePrefix("100.100.100.200/32"),  // Alibaba Cloud metadata
	netip.MustParsePrefix("168.63.129.16/32"),    // Azure platform (WireServer)
	netip.MustParsePrefix("64:ff9b::a9fe:0/112"), // 169.254.0.0/16 through NAT64
	netip.MustParsePrefix("0.0.0.0/8"),           // "this host"
	netip.MustParsePrefix("::/128"),              // unspecified
}

// ParseAllowList reads allow-list entries (see AllowList); empty entries are
// skipped. It fails on an entry that is neither a host name, a wildcard, an
// IP address nor a CIDR block.
func ParseAllowList(entries ...string) (*AllowList, error) {
	a := &AllowList{names: map[string]bool{}}
	for _, e := range entries {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "":
			continue
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("worker: allow-list entry %q is not a CIDR block (e.g. 10.0.0.0/8)", e)
			}
			a.prefixes = append(a.prefixes, p.Masked())
		case isIPLiteral(e):
			ip, _ := netip.ParseAddr(strings.Trim(e, "[]"))
			a.prefixes = append(a.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
		case strings.HasPrefix(e, "*."):
			if !validHostName(e[2:]) {
				return nil, fmt.Errorf("worker: allow-list entry %q: give *. and a host name, e.g. *.example.com", e)
			}
			a.suffixes = append(a.suffixes, e[1:])
		default:
			if !validHostName(e) {
				return nil, fmt.Errorf("worker: allow-list entry %q is not a host name, IP address or CIDR block (give api.example.com, *.example.com, 203.0.113.9 or 10.0.0.0/8, without scheme or port)", e)
			}
			a.names[e] = true
		}
	}
	return a, nil
}

func isIPLiteral(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}

func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (a *AllowList) empty() bool {
	return a == nil || (len(a.names) == 0 && len(a.suffixes) == 0 && len(a.prefixes) == 0)
}

// String lists the entries, for logs.
func (a *AllowList) String() string {
	if a.empty() {
		return "any host but link-local, metadata and unspecified addresses"
	}
	var parts []string
	for n := range a.names {
		parts = append(parts, n)
	}
	for _, s := range a.suffixes {
		parts = append(parts, "*"+s)
	}
	for _, p := range a.prefixes {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ",")
}

// nameAllowed reports whether host (a name, not an IP) is on the list, or
// the list is empty.
func (a *AllowList) nameAllowed(host string) bool {
	if a.empty() {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if a.names[host] {
		return true
	}
	for _, s := range a.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// addrAllowed reports whether ip may be dialled, for a host whose name was
// allowed (or not) by nameAllowed.
func (a *AllowList) addrAllowed(ip netip.Addr, nameOK bool) error {
	ip = ip.Unmap().WithZone("") // a zoned address is in no prefix
	if a != nil {
		for _, p := range a.prefixes {
			if p.Contains(ip) {
				return nil
			}
		}
	}
	for _, p := range deniedPrefixes {
		if p.Contains(ip) {
			return &DeniedHostError{Host: ip.String(), Why: "a link-local, cloud metadata or unspecified address (allow it with an IP or CIDR entry if you must)"}
		}
	}
	if !nameOK {
		return &DeniedHostError{Host: ip.String(), Why: "not on the allow-list"}
	}
	return nil
}

// checkURL refuses a URL whose host can be refused before dialling: a name
// not on the list (when the list has no IP entries that might admit what it
// resolves to), or an IP literal that is refused.
func (a *AllowList) checkURL(u *url.URL) error {
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return a.addrAllowed(ip, a.empty())
	}
	if !a.nameAllowed(host) && len(a.prefixes) == 0 {
		return &DeniedHostError{Host: host, Why: "not on the allow-list"}
	}
	return nil
}

// DeniedHostError is the error of an http:call whose URL, redirect or
// resolved address the handler's AllowList refuses. The task is archived.
type DeniedHostError struct {
	Host string
	Why  string
}

func (e *DeniedHostError) Error() string {
	return fmt.Sprintf("worker: http call to %s refused: %s (quotaq-worker --http-allow, worker.WithAllowList)", e.Host, e.Why)
}

// HTTPCallOption configures NewHTTPCallHandler.
type HTTPCallOption func(*httpCallConfig)

type httpCallConfig struct {
	allow *AllowList
}

// WithAllowList sets the hosts http:call tasks may reach; see AllowList.
// Default: nil, any host but link-local, cloud metadata and unspecified
// addresses.
func WithAllowList(a *AllowList) HTTPCallOption {
	return func(c *httpCallConfig) { c.allow = a }
}

// guardClient returns a copy of client that enforces allow on every dial
// and every redirect, and drops credentials on a redirect to another host.
// When client's Transport is not an *http.Transport (nil means
// http.DefaultTransport), only the URLs are checked, not the dialled
// addresses.
func guardClient(client *http.Client, allow *AllowList) *http.Client {
	c := *client
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	if tr, ok := rt.(*http.Transport); ok {
		tr = tr.Clone()
		dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			nameOK := allow.empty()
			if !isIPLiteral(host) {
				nameOK = allow.nameAllowed(host)
			}
			d := *dialer
			d.Control = func(_, address string, _ syscall.RawConn) error {
				h, _, err := net.SplitHostPort(address)
				if err != nil {
					return err
				}
				ip, err := netip.ParseAddr(h)
				if err != nil {
					return err
				}
				if err := allow.addrAllowed(ip, nameOK); err != nil {
					var de *DeniedHostError
					if errors.As(err, &de) && host != de.Host {
						de.Host = host + " (" + de.Host + ")"
					}
					return err
				}
				return nil
			}
			return d.DialContext(ctx, network, addr)
		}
		rt = tr
	}
	c.Transport = rt
	next := client.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := allow.checkURL(req.URL); err != nil {
			return err
		}
		if !sameOrigin(req.URL, via[0].URL) {
			dropCredentials(req.Header)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

func sameOrigin(a, b *url.URL) bool {
	return a.Scheme == b.Scheme && strings.EqualFold(a.Host, b.Host)
}

// redirectSafeHeaders are the headers a redirect to another host keeps: none
// of them carries a credential.
var redirectSafeHeaders = map[string]bool{
	"Accept": true, "Accept-Encoding": true, "Accept-Language": true, "Cache-Control": true,
	"Content-Type": true, "Content-Length": true, "User-Agent": true, "Referer": true,
}

// dropCredentials removes every header but redirectSafeHeaders: the task's
// Authorization, Cookie and custom headers such as X-API-Key must not reach
// another host.
func dropCredentials(h http.Header) {
	for k := range h {
		if !redirectSafeHeaders[http.CanonicalHeaderKey(k)] {
			delete(h, k)
		}
	}
}
