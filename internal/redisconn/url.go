package redisconn

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redacted replaces passwords wherever redisconn prints a URL or a Config.
const redacted = "xxxxx"

// serverURL is a parsed single-server URL.
type serverURL struct {
	network  string // "tcp" or "unix"
	addr     string // host:port, or the socket path
	host     string // host without port (TLS server name)
	username string
	password string
	db       int
	tls      bool // rediss://
	// opts is what redis.ParseURL makes of the URL: the query's options
	// (dial_timeout, read_timeout, pool_size, client_name, ...).
	opts *redis.Options
}

// display is the URL without user information, for logs and errors.
func (s serverURL) display() string {
	if s.network == "unix" {
		return fmt.Sprintf("unix://%s?db=%d", s.addr, s.db)
	}
	scheme := "redis"
	if s.tls {
		scheme = "rediss"
	}
	return fmt.Sprintf("%s://%s/%d", scheme, s.addr, s.db)
}

// passwordParam is a password given as a query parameter (go-redis's
// Sentinel URLs take the master's that way).
var passwordParam = regexp.MustCompile(`(?i)([?&](?:sentinel_)?password=)[^&#]*`)

// RedactURL returns raw with any password replaced by "xxxxx". It works on
// strings that do not parse as URLs too, so an error about a malformed URL can
// quote it safely: everything between the first ':' after "scheme://" and the
// last '@' is treated as the password, and so is the value of a password=
// query parameter.
func RedactURL(raw string) string {
	return passwordParam.ReplaceAllString(redactUserinfoOf(raw), "${1}"+redacted)
}

func redactUserinfoOf(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		// No scheme: "user:password@host" still must not leak.
		if at := strings.LastIndex(raw, "@"); at >= 0 {
			return redactUserinfo(raw[:at]) + raw[at:]
		}
		return raw
	}
	rest := raw[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return raw
	}
	return raw[:i+3] + redactUserinfo(rest[:at]) + rest[at:]
}

func redactUserinfo(userinfo string) string {
	if colon := strings.IndexByte(userinfo, ':'); colon >= 0 {
		return userinfo[:colon+1] + redacted
	}
	return userinfo
}

// parseURL parses a single-server Redis URL. Its errors quote the URL with the
// password redacted and never echo a part that could hold the password.
func parseURL(raw string) (serverURL, error) {
	shown := RedactURL(raw)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: --redis-url (REDIS_URL) %q: %s", ErrInvalidConfig, shown, fmt.Sprintf(format, args...))
	}
	i := strings.Index(raw, "://")
	if i < 0 {
		return serverURL{}, bad("no scheme; write it as redis://host:port/db (or rediss:// for TLS)")
	}
	scheme := strings.ToLower(raw[:i])
	var s serverURL
	switch scheme {
	case "redis":
		s.network = "tcp"
	case "rediss":
		s.network, s.tls = "tcp", true
	case "unix":
		s.network = "unix"
	default:
		return serverURL{}, bad("scheme %q is not supported; use redis://, rediss:// or unix://", scheme)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, password included: keep only our text.
		return serverURL{}, bad("not a valid URL; URL-encode special characters in the password (@ as %%40, / as %%2F, # as %%23)")
	}
	if u.User != nil {
		s.username = u.User.Username()
		s.password, _ = u.User.Password()
	}
	if strings.Contains(u.Host, "@") || strings.Contains(u.Path, "@") || strings.Contains(u.RawQuery, "@") || u.Fragment != "" {
		// A password with an unescaped '/', '?' or '#' ends up here.
		return serverURL{}, bad("unexpected '@' or '#'; URL-encode special characters in the password (@ as %%40, / as %%2F, # as %%23)")
	}
	if s.network == "unix" {
		if u.Path == "" {
			return serverURL{}, bad("no socket path; write it as unix:///path/to/redis.sock?db=0")
		}
		s.addr = u.Path
		return s.withOptions(raw, bad)
	}
	s.host = u.Hostname()
	if s.host == "" {
		return serverURL{}, bad("no host; write it as redis://host:port/db")
	}
	if strings.Contains(s.host, ":") && !strings.HasPrefix(u.Host, "[") {
		return serverURL{}, bad("host %q has more than one ':'; write it as redis://host:port/db (an IPv6 address goes in brackets: redis://[::1]:6379/0)", u.Host)
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return serverURL{}, bad("port %q is not a port number (1-65535)", port)
	}
	s.addr = net.JoinHostPort(s.host, port)
	if p := strings.Trim(u.Path, "/"); p != "" {
		if s.db, err = strconv.Atoi(p); err != nil || s.db < 0 {
			return serverURL{}, bad("database %q is not a number; the path is the database (redis://host:6379/0)", p)
		}
	}
	return s.withOptions(raw, bad)
}

// withOptions reads the URL's query with go-redis's own parser, so REDIS_URL
// takes every option redis.ParseURL does (?dial_timeout=3s&pool_size=20),
// and refuses what it refuses, in words that never hold the password.
func (s serverURL) withOptions(raw string, bad func(string, ...any) error) (serverURL, error) {
	o, err := redis.ParseURL(raw)
	if err != nil {
		return serverURL{}, bad("%s; the query takes go-redis's options (db, dial_timeout=3s, read_timeout, write_timeout, pool_size, client_name, max_retries, ...: see redis.ParseURL)",
			scrub(strings.TrimPrefix(err.Error(), "redis: "), []string{s.password}))
	}
	if o.DB < 0 {
		return serverURL{}, bad("db %d is not a database number (use 0, 1, ...)", o.DB)
	}
	s.db, s.opts = o.DB, o
	return s, nil
}
