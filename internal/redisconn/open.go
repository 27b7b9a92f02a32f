package redisconn

import (
	"context"
	"errors"
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
	conn := &Conn{Asynq: t.asynq, Addr: t.addr, Redis: t.newClient()}
	timeout := t.timeout()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := conn.Redis.Ping(pctx).Err(); err != nil {
		_ = conn.Redis.Close()
		if refusedCredentials(err) {
			return nil, &credentialsError{addr: t.addr, err: err, secrets: t.secrets}
		}
		return nil, &unreachableError{addr: t.addr, err: err, secrets: t.secrets}
	}
	if err := checkEviction(pctx, conn, t.allowEviction, logger); err != nil {
		_ = conn.Redis.Close()
		return nil, err
	}
	return conn, nil
}

// timeout bounds Open's first PING: the dial timeout, or
// DefaultDialTimeout when the URL turned it off (dial_timeout=0).
func (t *target) timeout() time.Duration {
	d := DefaultDialTimeout
	switch {
	case t.single != nil:
		d = t.single.DialTimeout
	case t.failover != nil:
		d = t.failover.DialTimeout
	case t.cluster != nil:
		d = t.cluster.DialTimeout
	}
	if d <= 0 {
		return DefaultDialTimeout
	}
	return d
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
			Username: r.Username, Password: r.Password, DB: r.DB, DialTimeout: dialTimeout(r.DialTimeout, 0), TLSConfig: tc,
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
			Addrs: r.ClusterAddrs, Username: r.Username, Password: r.Password, DialTimeout: dialTimeout(r.DialTimeout, 0), TLSConfig: tc,
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
		if s.cluster != nil || s.failover != nil {
			if err := r.resolveURLTopology(t, s, tlsOn); err != nil {
				return nil, err
			}
			break
		}
		r.credentials(&s.username, &s.password)
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
		// the URL's query options (redis.ParseURL), with the address,
		// credentials, TLS and dial timeout as the settings above decide
		o := *s.opts
		o.Network, o.Addr, o.Username, o.Password, o.DB = s.network, s.addr, s.username, s.password, s.db
		if tc != nil && s.opts.TLSConfig != nil && s.opts.TLSConfig.InsecureSkipVerify {
			tc.InsecureSkipVerify = true // ?skip_verify=true
		}
		o.TLSConfig = tc
		o.DialTimeout = dialTimeout(r.DialTimeout, s.opts.DialTimeout)
		t.single = &o
	}
	if t.kind != "embedded" {
		t.asynq = asynqOpt{t}
	}
	return t, nil
}

// resolveURLTopology fills t from a Cluster or Sentinel URL (go-redis's
// forms, see withOptions). The settings override the URL as they do a
// single server's: REDIS_USERNAME and REDIS_PASSWORD the nodes' (a
// Sentinel master's) credentials, REDIS_SENTINEL_PASSWORD the Sentinels'.
func (r *Config) resolveURLTopology(t *target, s serverURL, tlsOn bool) error {
	tlsOn = tlsOn || s.tls
	tc, err := r.tlsConfig(tlsOn, "")
	if err != nil {
		return err
	}
	if s.cluster != nil {
		o := *s.cluster
		r.credentials(&o.Username, &o.Password)
		o.TLSConfig, o.DialTimeout = tc, dialTimeout(r.DialTimeout, s.cluster.DialTimeout)
		t.kind, t.cluster = "cluster", &o
		t.addr = fmt.Sprintf("%s://%s", scheme("redis-cluster", tlsOn), strings.Join(o.Addrs, ","))
		t.secrets = append(t.secrets, o.Password)
		return nil
	}
	o := *s.failover
	if tc != nil && s.failover.TLSConfig != nil && s.failover.TLSConfig.InsecureSkipVerify {
		tc.InsecureSkipVerify = true // ?skip_verify=true
	}
	r.credentials(&o.Username, &o.Password)
	if r.SentinelPassword != "" {
		o.SentinelPassword = r.SentinelPassword
	}
	o.TLSConfig, o.DialTimeout = tc, dialTimeout(r.DialTimeout, s.failover.DialTimeout)
	t.kind, t.failover = "sentinel", &o
	t.addr = fmt.Sprintf("%s://%s/%d?master=%s", scheme("redis-sentinel", tlsOn), strings.Join(o.SentinelAddrs, ","), o.DB, url.QueryEscape(o.MasterName))
	t.secrets = append(t.secrets, o.Password, o.SentinelPassword)
	return nil
}

// credentials sets --redis-username and --redis-password (REDIS_USERNAME,
// REDIS_PASSWORD), when given, over a URL's.
func (r *Config) credentials(user, password *string) {
	if r.Username != "" {
		*user = r.Username
	}
	if r.Password != "" {
		*password = r.Password
	}
}

// dialTimeout is --redis-timeout (REDIS_TIMEOUT) when set, else the URL's
// dial_timeout (negative: none), else DefaultDialTimeout.
func dialTimeout(set, fromURL time.Duration) time.Duration {
	switch {
	case set > 0:
		return set
	case fromURL != 0:
		return fromURL
	}
	return DefaultDialTimeout
}

// newClient returns a client built from t's options (a copy: go-redis fills
// in its defaults in the options it is given).
func (t *target) newClient() redis.UniversalClient {
	switch t.kind {
	case "sentinel":
		o := *t.failover
		return redis.NewFailoverClient(&o)
	case "cluster":
		o := *t.cluster
		return redis.NewClusterClient(&o)
	}
	o := *t.single
	return redis.NewClient(&o)
}

// asynqOpt gives asynq (NewClient, NewInspector, NewServer) a client built
// from the same options as Conn.Redis: every option of the URL reaches
// asynq's connections too.
type asynqOpt struct{ t *target }

// MakeRedisClient implements asynq.RedisConnOpt.
func (o asynqOpt) MakeRedisClient() any { return o.t.newClient() }

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

// refusedCredentials says whether err is the server refusing the user name
// or password it was given (or asking for one): it is up and answering, the
// configuration is wrong.
func refusedCredentials(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, p := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "ERR AUTH", "ERR invalid password", "ERR invalid username"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// credentialsError is a server that refused the credentials: a
// configuration error (ErrInvalidConfig), not an outage. Like
// unreachableError it keeps the driver's error and scrubs passwords.
type credentialsError struct {
	addr    string
	err     error
	secrets []string
}

func (e *credentialsError) Error() string {
	return scrub(fmt.Sprintf("redisconn: Redis at %s refused the credentials: %v (check the user name and password in --redis-url or REDIS_URL)", e.addr, e.err), e.secrets)
}

func (e *credentialsError) Unwrap() []error { return []error{ErrInvalidConfig, e.err} }

// GoString is Error, so %#v does not print the secrets either.
func (e *credentialsError) GoString() string { return e.Error() }

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
