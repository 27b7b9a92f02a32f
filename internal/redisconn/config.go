// Package redisconn is the one place where quotaq's programs learn how to reach
// Redis.
//
// Both cmd/worker and cmd/enqueue register the same flags with
// [Config.RegisterFlags]; each flag left empty falls back to an environment
// variable, so REDIS_URL works everywhere. [Config.Open] turns the result into
// a go-redis [redis.UniversalClient], the matching [asynq.RedisConnOpt] and a
// display address that never contains a password.
//
// Three topologies are supported, chosen by what is set:
//
//   - a single server: --redis-url / REDIS_URL, redis://[user:password@]host:port/db,
//     rediss:// for TLS, or unix:///path/to/redis.sock?db=N; the query takes
//     every option go-redis's redis.ParseURL reads (?dial_timeout=3s&pool_size=20),
//     and asynq's connections get them too;
//   - Sentinel: --redis-sentinel-addrs + --redis-sentinel-master, or a URL in
//     go-redis's Sentinel form (redis.ParseFailoverURL:
//     redis://s1:26379?master_name=mymaster&addr=s2:26379);
//   - Cluster: --redis-cluster-addrs, or a URL in go-redis's Cluster form
//     (redis.ParseClusterURL: redis://h1:7000?addr=h2:7000).
//
// An in-memory miniredis is started only when asked for: `quotaq-worker
// --embedded` (QUOTAQ_EMBEDDED=1; a program offers the flag with
// [Config.AllowEmbedded]) listens on [DefaultEmbeddedAddr], where
// `quotaq-enqueue` (whose default URL is the same address) reaches it. A
// program that offers --embedded and finds neither it nor any Redis setting
// refuses to start ([ErrNoRedis]): a worker whose REDIS_URL is missing or
// misspelled must not run on a private, empty Redis. The examples embed without
// being asked ([Config.EmbeddedByDefault]). The embedded server's TTLs are
// advanced from a ticker: miniredis never expires keys by itself.
//
// After connecting, Open reads the server's maxmemory-policy: anything but
// noeviction lets Redis evict the limiter's state and asynq's tasks when
// memory runs out, so Open refuses ([ErrEvictionPolicy]) unless
// --allow-eviction (QUOTAQ_ALLOW_EVICTION) is given; when the server does not
// answer CONFIG GET (managed Redis, an ACL without +config) it logs that the
// policy could not be checked and goes on.
package redisconn

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultEmbeddedAddr is where the embedded miniredis listens unless
// --embedded-addr says otherwise. It is Redis's own default address, so a
// client with no configuration at all (redis://127.0.0.1:6379/0) reaches it.
const DefaultEmbeddedAddr = "127.0.0.1:6379"

// DefaultURL is the address used when no Redis is configured by a program
// that does not offer --embedded (quotaq-enqueue).
const DefaultURL = "redis://127.0.0.1:6379/0"

// DefaultDialTimeout bounds how long Open waits to reach Redis.
const DefaultDialTimeout = 5 * time.Second

// ErrInvalidConfig is matched (errors.Is) by every error that comes from a bad
// flag or environment value, before any connection is attempted. Programs
// treat it as a usage error.
var ErrInvalidConfig = errors.New("redisconn: invalid Redis configuration")

// ErrNoRedis is matched (errors.Is) by the error of a program that offers
// --embedded when neither it nor any Redis setting is given. It matches
// ErrInvalidConfig too.
var ErrNoRedis = fmt.Errorf("%w: no Redis configured", ErrInvalidConfig)

// ErrUnreachable is matched (errors.Is) by Open's error when the configured
// Redis does not answer PING.
var ErrUnreachable = errors.New("redisconn: Redis unreachable")

// Config says how to reach Redis. The zero value means "nothing configured":
// the default URL; ErrNoRedis when AllowEmbedded is set; the embedded server
// when Embedded or EmbeddedByDefault is set.
//
// Every string field left empty (and every bool left false, and DB left 0) is
// read from its environment variable when the Config is used; a flag that is
// set wins over the environment. Config's String and GoString never show a
// password.
type Config struct {
	URL              string        // --redis-url, REDIS_URL
	Username         string        // --redis-username, REDIS_USERNAME (overrides the URL's)
	Password         string        // --redis-password, REDIS_PASSWORD (overrides the URL's)
	DB               int           // --redis-db, REDIS_DB (Sentinel; a URL carries its own)
	SentinelAddrs    []string      // --redis-sentinel-addrs, REDIS_SENTINEL_ADDRS (comma-separated)
	SentinelMaster   string        // --redis-sentinel-master, REDIS_SENTINEL_MASTER
	SentinelPassword string        // --redis-sentinel-password, REDIS_SENTINEL_PASSWORD
	ClusterAddrs     []string      // --redis-cluster-addrs, REDIS_CLUSTER_ADDRS (comma-separated)
	TLS              bool          // --redis-tls, REDIS_TLS (implied by rediss:// and by any TLS file)
	TLSCAFile        string        // --redis-tls-ca, REDIS_TLS_CA (PEM; default: system roots)
	TLSCertFile      string        // --redis-tls-cert, REDIS_TLS_CERT (client certificate, PEM)
	TLSKeyFile       string        // --redis-tls-key, REDIS_TLS_KEY
	TLSServerName    string        // --redis-tls-server-name, REDIS_TLS_SERVER_NAME (default: the host dialled)
	TLSSkipVerify    bool          // --redis-tls-insecure, REDIS_TLS_INSECURE (tests only)
	DialTimeout      time.Duration // --redis-timeout, REDIS_TIMEOUT; default the URL's dial_timeout, else DefaultDialTimeout
	AllowEviction    bool          // --allow-eviction, QUOTAQ_ALLOW_EVICTION: run on a server whose maxmemory-policy is not noeviction

	// AllowEmbedded makes the program offer --embedded and --embedded-addr,
	// and makes Open refuse (ErrNoRedis) when neither --embedded nor any
	// Redis setting is given. It is set by the program, not by a flag.
	AllowEmbedded bool
	// Embedded asks for an in-memory miniredis (--embedded, QUOTAQ_EMBEDDED);
	// it is an error together with a Redis setting.
	Embedded bool
	// EmbeddedByDefault starts the in-memory miniredis when nothing is
	// configured, without being asked: for the examples, never for a server.
	EmbeddedByDefault bool
	// EmbeddedAddr is where the embedded server listens (--embedded-addr,
	// QUOTAQ_EMBEDDED_ADDR); default DefaultEmbeddedAddr. "127.0.0.1:0" picks
	// a free port.
	EmbeddedAddr string

	// Env looks up environment variables; nil means os.LookupEnv. Tests set it
	// to keep their environment private.
	Env func(key string) (string, bool)
}

// RegisterFlags defines the connection flags on fs, bound to c's fields. The
// current field values are the flags' defaults. Environment variables are
// read later, by Validate and Open, for the flags left unset; --help therefore
// never prints a password taken from the environment.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "redis-url", c.URL, "Redis `URL`: redis://[user:password@]host:port/db, rediss:// for TLS, unix:///path?db=N, with go-redis's query options (?dial_timeout=3s&pool_size=20&client_name=...); ?addr=host2:port&addr=... for a Cluster, ?master_name=NAME for Sentinel (env REDIS_URL; default "+DefaultURL+")")
	fs.StringVar(&c.Username, "redis-username", c.Username, "Redis ACL `user`name, overrides the URL's (env REDIS_USERNAME)")
	fs.StringVar(&c.Password, "redis-password", c.Password, "Redis `password`, overrides the URL's; prefer the env REDIS_PASSWORD, flags show up in ps")
	fs.IntVar(&c.DB, "redis-db", c.DB, "Redis database `number` for Sentinel (env REDIS_DB)")
	fs.Var((*addrList)(&c.SentinelAddrs), "redis-sentinel-addrs", "comma-separated Sentinel `host:port`s (env REDIS_SENTINEL_ADDRS); needs --redis-sentinel-master")
	fs.StringVar(&c.SentinelMaster, "redis-sentinel-master", c.SentinelMaster, "Sentinel master `name` (env REDIS_SENTINEL_MASTER)")
	fs.StringVar(&c.SentinelPassword, "redis-sentinel-password", c.SentinelPassword, "`password` of the Sentinels themselves (env REDIS_SENTINEL_PASSWORD)")
	fs.Var((*addrList)(&c.ClusterAddrs), "redis-cluster-addrs", "comma-separated `host:port`s of Redis Cluster nodes to start from (env REDIS_CLUSTER_ADDRS)")
	fs.BoolVar(&c.TLS, "redis-tls", c.TLS, "use TLS (env REDIS_TLS; implied by rediss://)")
	fs.StringVar(&c.TLSCAFile, "redis-tls-ca", c.TLSCAFile, "PEM `file` of CAs to trust (env REDIS_TLS_CA; default: system roots)")
	fs.StringVar(&c.TLSCertFile, "redis-tls-cert", c.TLSCertFile, "PEM client certificate `file` (env REDIS_TLS_CERT)")
	fs.StringVar(&c.TLSKeyFile, "redis-tls-key", c.TLSKeyFile, "PEM client key `file` (env REDIS_TLS_KEY)")
	fs.StringVar(&c.TLSServerName, "redis-tls-server-name", c.TLSServerName, "TLS server `name` to verify (env REDIS_TLS_SERVER_NAME; default: the host dialled)")
	fs.BoolVar(&c.TLSSkipVerify, "redis-tls-insecure", c.TLSSkipVerify, "do not verify the server's certificate (env REDIS_TLS_INSECURE; tests only)")
	fs.DurationVar(&c.DialTimeout, "redis-timeout", c.DialTimeout, "how long to wait for Redis to answer (env REDIS_TIMEOUT; default 5s)")
	fs.BoolVar(&c.AllowEviction, "allow-eviction", c.AllowEviction, "run even though Redis's maxmemory-policy is not noeviction, so Redis may evict limits and tasks when memory runs out (env QUOTAQ_ALLOW_EVICTION; logs a warning)")
	if c.AllowEmbedded {
		fs.BoolVar(&c.Embedded, "embedded", c.Embedded, "run an in-memory Redis (miniredis) in this process, to try quotaq: its data is lost on exit (env QUOTAQ_EMBEDDED)")
		fs.StringVar(&c.EmbeddedAddr, "embedded-addr", c.EmbeddedAddr, "with --embedded, where the in-memory Redis listens: `host:port` (env QUOTAQ_EMBEDDED_ADDR; default "+DefaultEmbeddedAddr+")")
	}
}

// addrList is a comma-separated list flag.
type addrList []string

func (a *addrList) String() string {
	if a == nil {
		return ""
	}
	return strings.Join(*a, ",")
}

func (a *addrList) Set(s string) error {
	*a = splitList(s)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// withEnv returns a copy of c with every unset field taken from the
// environment.
func (c *Config) withEnv() (Config, error) {
	r := *c
	r.SentinelAddrs = append([]string(nil), c.SentinelAddrs...)
	r.ClusterAddrs = append([]string(nil), c.ClusterAddrs...)
	lookup := c.Env
	if lookup == nil {
		lookup = os.LookupEnv
	}
	get := func(key string) string {
		v, _ := lookup(key)
		return strings.TrimSpace(v)
	}
	str := func(field *string, key string) {
		if *field == "" {
			*field = get(key)
		}
	}
	str(&r.URL, "REDIS_URL")
	str(&r.Username, "REDIS_USERNAME")
	if r.Password == "" {
		r.Password, _ = lookup("REDIS_PASSWORD") // passwords may have spaces at the ends
	}
	if r.SentinelPassword == "" {
		r.SentinelPassword, _ = lookup("REDIS_SENTINEL_PASSWORD")
	}
	str(&r.SentinelMaster, "REDIS_SENTINEL_MASTER")
	str(&r.TLSCAFile, "REDIS_TLS_CA")
	str(&r.TLSCertFile, "REDIS_TLS_CERT")
	str(&r.TLSKeyFile, "REDIS_TLS_KEY")
	str(&r.TLSServerName, "REDIS_TLS_SERVER_NAME")
	str(&r.EmbeddedAddr, "QUOTAQ_EMBEDDED_ADDR")
	if len(r.SentinelAddrs) == 0 {
		r.SentinelAddrs = splitList(get("REDIS_SENTINEL_ADDRS"))
	}
	if len(r.ClusterAddrs) == 0 {
		r.ClusterAddrs = splitList(get("REDIS_CLUSTER_ADDRS"))
	}
	boolean := func(field *bool, key string) error {
		v := get(key)
		if *field || v == "" {
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%w: %s=%q is not a boolean (use true or false)", ErrInvalidConfig, key, v)
		}
		*field = b
		return nil
	}
	if err := boolean(&r.TLS, "REDIS_TLS"); err != nil {
		return r, err
	}
	if err := boolean(&r.TLSSkipVerify, "REDIS_TLS_INSECURE"); err != nil {
		return r, err
	}
	if err := boolean(&r.AllowEviction, "QUOTAQ_ALLOW_EVICTION"); err != nil {
		return r, err
	}
	if r.AllowEmbedded {
		if err := boolean(&r.Embedded, "QUOTAQ_EMBEDDED"); err != nil {
			return r, err
		}
	}
	if v := get("REDIS_DB"); r.DB == 0 && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return r, fmt.Errorf("%w: REDIS_DB=%q is not a database number (use 0, 1, ...)", ErrInvalidConfig, v)
		}
		r.DB = n
	}
	if v := get("REDIS_TIMEOUT"); r.DialTimeout == 0 && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return r, fmt.Errorf("%w: REDIS_TIMEOUT=%q is not a positive duration (use e.g. 5s)", ErrInvalidConfig, v)
		}
		r.DialTimeout = d
	}
	if r.DialTimeout < 0 {
		return r, fmt.Errorf("%w: --redis-timeout %s is negative (use e.g. 5s)", ErrInvalidConfig, r.DialTimeout)
	}
	if r.DB < 0 {
		return r, fmt.Errorf("%w: --redis-db %d is negative (use 0, 1, ...)", ErrInvalidConfig, r.DB)
	}
	if r.EmbeddedAddr == "" {
		r.EmbeddedAddr = DefaultEmbeddedAddr
	}
	return r, nil
}

// String describes c for logs and errors, with passwords replaced by "xxxxx".
func (c Config) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("url", RedactURL(c.URL))
	add("username", c.Username)
	if c.Password != "" {
		add("password", redacted)
	}
	if c.DB != 0 {
		add("db", strconv.Itoa(c.DB))
	}
	add("sentinel_addrs", strings.Join(c.SentinelAddrs, ","))
	add("sentinel_master", c.SentinelMaster)
	if c.SentinelPassword != "" {
		add("sentinel_password", redacted)
	}
	add("cluster_addrs", strings.Join(c.ClusterAddrs, ","))
	if c.TLS {
		add("tls", "true")
	}
	add("tls_ca", c.TLSCAFile)
	add("tls_cert", c.TLSCertFile)
	add("tls_key", c.TLSKeyFile)
	add("tls_server_name", c.TLSServerName)
	if c.TLSSkipVerify {
		add("tls_insecure", "true")
	}
	if c.AllowEviction {
		add("allow_eviction", "true")
	}
	if c.Embedded {
		add("embedded", "true")
	}
	if c.AllowEmbedded || c.Embedded || c.EmbeddedByDefault {
		add("embedded_addr", c.EmbeddedAddr)
	}
	return "redisconn.Config{" + strings.Join(parts, " ") + "}"
}

// GoString is String, so %#v does not print the password either.
func (c Config) GoString() string { return c.String() }
