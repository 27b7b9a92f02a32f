package redisconn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Conn is an open connection to Redis, as both go-redis and asynq want it.
type Conn struct {
	// Redis is the client for the limiter and the admin commands. asynq can
	// share it too (asynq.NewClientFromRedisClient).
	Redis redis.UniversalClient
	// Asynq describes the same server for asynq.NewServer, NewClient and
	// NewInspector.
	Asynq asynq.RedisConnOpt
	// Addr names the server for logs and errors; it never holds a password
	// ("redis://10.0.0.5:6379/0", "redis-sentinel://h1:26379,h2:26379?master=m",
	// "redis-cluster://h1:7000,h2:7000").
	Addr string
	// Embedded reports whether Redis is the in-memory miniredis started by
	// Open: its data is lost when the process exits.
	Embedded bool
	// MaxmemoryPolicy is the server's maxmemory-policy as read by Open
	// ("noeviction"), or "" when the server did not tell (CONFIG GET
	// refused).
	MaxmemoryPolicy string

	stop func()
}

// Close closes the client and stops the embedded server, if any.
func (c *Conn) Close() error {
	err := c.Redis.Close()
	if c.stop != nil {
		c.stop()
	}
	return err
}

// target is a Config resolved into client options.
type target struct {
	kind     string // "single", "sentinel", "cluster", "embedded"
	addr     string // display address
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
	asynq    asynq.RedisConnOpt
	secrets  []string
	// allowEviction is --allow-eviction: a policy other than noeviction is
	// only warned about.
	allowEviction bool
}

// Validate checks c (and the environment variables it falls back to) without
// connecting. Its errors match ErrInvalidConfig.
func (c *Config) Validate() error {
	_, err := c.resolve()
	return err
}

// Addr returns the display address Open would connect to, or "" when c is
// invalid.
func (c *Config) Addr() string {
	t, err := c.resolve()
	if err != nil {
		return ""
	}
	return t.addr
}

// Open connects to the configured Redis and checks that it answers PING within
// the dial timeout, and that its maxmemory-policy is noeviction (see the
// package doc); with Embedded set (or EmbeddedByDefault and nothing
// configured) it starts the embedded miniredis instead and logs one line
// saying so. logger may be nil.
//
// Errors match ErrInvalidConfig (bad flags or environment, ErrNoRedis),
// ErrUnreachable (the server did not answer) or ErrEvictionPolicy; their text
// names the address but never a password.
func (c *Config) Open(ctx context.Context, logger *slog.Logger) (*Conn, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t, err := c.resolve()
	if err != nil {
		return nil, err
	}
	if t.kind == "embedded" {
		r, _ := c.withEnv() // resolve succeeded, so this does too
		conn, err := openEmbedded(r.EmbeddedAddr, logger)
		if err == nil {
			conn.MaxmemoryPolicy = NoEviction
		}
		return conn, err
	}
	conn := &Conn{Asynq: t.asynq, Addr: t.addr}
	switch t.kind {
	case "single":
		conn.Redis = redis.NewClient(t.single)
	case "sentinel":
		conn.Redis = redis.NewFailoverClient(t.failover)
	case "cluster":
		conn.Redis = redis.NewClusterClient(t.cluster)
	}
	timeout := t.timeout()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := conn.Redis.Ping(pctx).Err(); err != nil {
		_ = conn.Redis.Close()
		return nil, &unreachableError{addr: t.addr, err: err, secrets: t.secrets}
	}
	if err := checkEviction(pctx, conn, t.allowEviction, logger); err != nil {
		_ = conn.Redis.Close()
		return nil, err
	}
	return conn, nil
}

func (t *target) timeout() time.Duration {
	switch {
	case t.single != nil:
		return t.single.DialTimeout
	case t.failover != nil:
		return t.failover.DialTimeout
	default:
		return t.cluster.DialTimeout
	}
}

// resolve applies the environment and turns c into client options.
func (c *Config) resolve() (*target, error) {
	r, err := c.withEnv()
	if err != nil {
		return nil, err
	}
	modes := 0
	for _, set := range []bool{r.URL != "", len(r.SentinelAddrs) > 0 || r.SentinelMaster != "", len(r.ClusterAddrs) > 0} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		return nil, fmt.Errorf("%w: more than one of --redis-url (REDIS_URL), --redis-sentinel-addrs/--redis-sentinel-master (REDIS_SENTINEL_*) and --redis-cluster-addrs (REDIS_CLUSTER_ADDRS) is set; keep one", ErrInvalidConfig)
	}
	t := &target{secrets: []string{r.Password, r.SentinelPassword}, allowEviction: r.AllowEviction}
	tlsOn := r.TLS || r.TLSCAFile != "" || r.TLSCertFile != "" || r.TLSKeyFile != "" || r.TLSServerName != "" || r.TLSSkipVerify
	configured := modes > 0 || tlsOn || r.Username != "" || r.Password != ""
	switch {
	case r.Embedded && configured:
		return nil, fmt.Errorf("%w: --embedded (QUOTAQ_EMBEDDED) and a Redis setting (--redis-*, REDIS_*) are both given; keep one", ErrInvalidConfig)
	case !configured && !r.Embedded && !r.EmbeddedByDefault && r.AllowEmbedded:
		return nil, fmt.Errorf("%w: set --redis-url or REDIS_URL (or the Sentinel or Cluster settings, see --help) to use a Redis server, or pass --embedded (QUOTAQ_EMBEDDED=1) to try quotaq on an in-memory Redis whose data is lost on exit", ErrNoRedis)
	}
	switch {
	case len(r.SentinelAddrs) > 0 || r.SentinelMaster != "":
		if len(r.SentinelAddrs) == 0 || r.SentinelMaster == "" {
			return nil, fmt.Errorf("%w: Sentinel needs both --redis-sentinel-addrs (REDIS_SENTINEL_ADDRS) and --redis-sentinel-master (REDIS_SENTINEL_MASTER)", ErrInvalidConfig)
		}
		if err := checkAddrs("--redis-sentinel-addrs (REDIS_SENTINEL_ADDRS)", r.SentinelAddrs); err != nil {
			return nil, err
		}
		tc, err := r.tlsConfig(tlsOn, "")
		if err != nil {
			return nil, err
		}
		t.kind = "sentinel"
		t.addr = fmt.Sprintf("%s://%s/%d?master=%s", scheme("redis-sentinel", tlsOn), strings.Join(r.SentinelAddrs, ","), r.DB, url.QueryEscape(r.SentinelMaster))
		t.failover = &redis.FailoverOptions{
			MasterName: r.SentinelMaster, SentinelAddrs: r.SentinelAddrs, SentinelPassword: r.SentinelPassword,
			Username: r.Username, Password: r.Password, DB: r.DB, DialTimeout: r.DialTimeout, TLSConfig: tc,
		}
		t.asynq = asynq.RedisFailoverClientOpt{
			MasterName: r.SentinelMaster, SentinelAddrs: r.SentinelAddrs, SentinelPassword: r.SentinelPassword,
			Username: r.Username, Password: r.Password, DB: r.DB, DialTimeout: r.DialTimeout, TLSConfig: tc,
		}
	case len(r.ClusterAddrs) > 0:
		if err := checkAddrs("--redis-cluster-addrs (REDIS_CLUSTER_ADDRS)", r.ClusterAddrs); err != nil {
			return nil, err
		}
		if r.DB != 0 {
			return nil, fmt.Errorf("%w: --redis-db %d with Redis Cluster, which only has database 0", ErrInvalidConfig, r.DB)
		}
		tc, err := r.tlsConfig(tlsOn, "")
		if err != nil {
			return nil, err
		}
		t.kind = "cluster"
		t.addr = fmt.Sprintf("%s://%s", scheme("redis-cluster", tlsOn), strings.Join(r.ClusterAddrs, ","))
		t.cluster = &redis.ClusterOptions{
			Addrs: r.ClusterAddrs, Username: r.Username, Password: r.Password, DialTimeout: r.DialTimeout, TLSConfig: tc,
		}
		t.asynq = asynq.RedisClusterClientOpt{
			Addrs: r.ClusterAddrs, Username: r.Username, Password: r.Password, DialTimeout: r.DialTimeout, TLSConfig: tc,
		}
	case r.Embedded || (r.EmbeddedByDefault && !configured):
		if _, _, err := splitHostPort(r.EmbeddedAddr); err != nil {
			return nil, fmt.Errorf("%w: --embedded-addr (QUOTAQ_EMBEDDED_ADDR) %q: %v", ErrInvalidConfig, r.EmbeddedAddr, err)
		}
		t.kind = "embedded"
		t.addr = "redis://" + r.EmbeddedAddr + "/0"
	default:
		raw := r.URL
		if raw == "" {
			raw = DefaultURL
		}
		s, err := parseURL(raw)
		if err != nil {
			return nil, err
		}
		t.secrets = append(t.secrets, s.password)
		if r.DB != 0 {
			return nil, fmt.Errorf("%w: --redis-db (REDIS_DB) is for Sentinel; put the database in the URL path (redis://host:6379/%d)", ErrInvalidConfig, r.DB)
		}
		if r.Username != "" {
			s.username = r.Username
		}
		if r.Password != "" {
			s.password = r.Password
		}
		tlsOn = tlsOn || s.tls
		s.tls = tlsOn
		if tlsOn && s.network == "unix" {
			return nil, fmt.Errorf("%w: TLS over a unix socket (%s) is not supported", ErrInvalidConfig, s.display())
		}
		tc, err := r.tlsConfig(tlsOn, s.host)
		if err != nil {
			return nil, err
		}
		t.kind = "single"
		t.addr = s.display()
		t.single = &redis.Options{
			Network: s.network, Addr: s.addr, Username: s.username, Password: s.password, DB: s.db,
			DialTimeout: r.DialTimeout, TLSConfig: tc,
		}
		t.asynq = asynq.RedisClientOpt{
			Network: s.network, Addr: s.addr, Username: s.username, Password: s.password, DB: s.db,
			DialTimeout: r.DialTimeout, TLSConfig: tc,
		}
	}
	return t, nil
}

func scheme(base string, tlsOn bool) string {
	if tlsOn {
		return base + "s"
	}
	return base
}

func checkAddrs(what string, addrs []string) error {
	for _, a := range addrs {
		if _, _, err := splitHostPort(a); err != nil {
			return fmt.Errorf("%w: %s: %q: %v", ErrInvalidConfig, what, RedactURL(a), err)
		}
	}
	return nil
}

// unreachableError keeps the driver's error for errors.Is/As but scrubs any
// password out of its text.
type unreachableError struct {
	addr    string
	err     error
	secrets []string
}

func (e *unreachableError) Error() string {
	return scrub(fmt.Sprintf("redisconn: cannot reach Redis at %s: %v (is it running? set --redis-url or REDIS_URL)", e.addr, e.err), e.secrets)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// GoString is Error, so %#v does not print the secrets either.
func (e *unreachableError) GoString() string { return e.Error() }

// scrub replaces every occurrence of a secret (and its URL-escaped form) in s.
// Secrets shorter than 3 bytes are left alone: replacing them would mangle the
// text and hide nothing.
func scrub(s string, secrets []string) string {
	for _, p := range secrets {
		if len(p) < 3 {
			continue
		}
		s = strings.ReplaceAll(s, p, redacted)
		s = strings.ReplaceAll(s, url.QueryEscape(p), redacted)
		s = strings.ReplaceAll(s, url.PathEscape(p), redacted)
	}
	return s
}

func splitHostPort(a string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(a)
	if err != nil {
		return "", "", fmt.Errorf("not host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "", fmt.Errorf("port %q is not a port number", port)
	}
	return host, port, nil
}
