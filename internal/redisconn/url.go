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
	// What go-redis's parsers make of the URL, one of the three: opts
	// (redis.ParseURL) for a single server; cluster (redis.ParseClusterURL)
	// when the query names more nodes (addr=); failover
	// (redis.ParseFailoverURL) when it names a Sentinel master
	// (master_name=). The query's options (dial_timeout, pool_size, ...)
	// are in them.
	opts     *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
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
		return s.withOptions(raw, u.Query(), bad)
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
	return s.withOptions(raw, u.Query(), bad)
}

// withOptions reads the URL with go-redis's own parsers, so REDIS_URL takes
// every form and option they do: redis.ParseURL's (?dial_timeout=3s&pool_size=20),
// a Cluster's (redis://h1:7000?addr=h2:7000&addr=h3:7000, redis.ParseClusterURL)
// and Sentinel's (redis://s1:26379?master_name=mymaster&addr=s2:26379,
// redis.ParseFailoverURL: the user information is the Sentinels', the
// master's password is password=); it refuses what they refuse, in words
// that never hold a password.
func (s serverURL) withOptions(raw string, q url.Values, bad func(string, ...any) error) (serverURL, error) {
	var err error
	switch {
	case (q.Has("master_name") || q.Has("addr")) && s.network == "unix":
		return serverURL{}, bad("a unix:// URL names one server; Sentinel (master_name=) and Cluster (addr=) URLs are redis:// or rediss://")
	case q.Has("master_name"):
		if s.failover, err = redis.ParseFailoverURL(raw); err == nil {
			if s.failover.MasterName == "" {
				return serverURL{}, bad("master_name is empty; name the master the Sentinels watch (master_name=mymaster)")
			}
			s.db = s.failover.DB
		}
	case q.Has("addr"):
		if s.db != 0 {
			return serverURL{}, bad("database %d with Redis Cluster (addr=), which only has database 0", s.db)
		}
		s.cluster, err = redis.ParseClusterURL(raw)
	default:
		if s.opts, err = redis.ParseURL(raw); err == nil {
			s.db = s.opts.DB
		}
	}
	if err != nil {
		secrets := []string{s.password, q.Get("password")}
		return serverURL{}, bad("%s; the query takes go-redis's options (db, dial_timeout=3s, read_timeout, pool_size, client_name, ...; addr= for a Cluster, master_name= for Sentinel: see redis.ParseURL, ParseClusterURL, ParseFailoverURL)",
			scrub(strings.TrimPrefix(err.Error(), "redis: "), secrets))
	}
	if s.db < 0 {
		return serverURL{}, bad("db %d is not a database number (use 0, 1, ...)", s.db)
	}
	return s, nil
}
