package redisconn

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// env returns an Env func backed by a map, so tests keep the process
// environment out of it and can run in parallel.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestResolveSingleURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		url        string
		wantAddr   string // display
		wantDial   string // network address
		wantNet    string
		wantDB     int
		wantUser   string
		wantPass   string
		wantTLS    bool
		wantServer string
	}{
		{"DefaultWhenEmpty", "", "redis://127.0.0.1:6379/0", "127.0.0.1:6379", "tcp", 0, "", "", false, ""},
		{"HostPortDB", "redis://10.0.0.5:6380/3", "redis://10.0.0.5:6380/3", "10.0.0.5:6380", "tcp", 3, "", "", false, ""},
		{"DefaultPort", "redis://cache.internal", "redis://cache.internal:6379/0", "cache.internal:6379", "tcp", 0, "", "", false, ""},
		{"TrailingSlash", "redis://h:1/", "redis://h:1/0", "h:1", "tcp", 0, "", "", false, ""},
		{"PasswordOnly", "redis://:s3cret@h:6379/1", "redis://h:6379/1", "h:6379", "tcp", 1, "", "s3cret", false, ""},
		{"UserAndPassword", "redis://alice:s3cret@h:6379", "redis://h:6379/0", "h:6379", "tcp", 0, "alice", "s3cret", false, ""},
		{"EscapedPassword", "redis://alice:p%40ss%2Fw@h:6379", "redis://h:6379/0", "h:6379", "tcp", 0, "alice", "p@ss/w", false, ""},
		{"UnescapedAtInPassword", "redis://alice:s3cret@x@h:6379", "redis://h:6379/0", "h:6379", "tcp", 0, "alice", "s3cret@x", false, ""},
		{"TLS", "rediss://alice:s3cret@redis.example.com:6380/2", "rediss://redis.example.com:6380/2", "redis.example.com:6380", "tcp", 2, "alice", "s3cret", true, "redis.example.com"},
		{"UpperCaseScheme", "REDIS://h:1/0", "redis://h:1/0", "h:1", "tcp", 0, "", "", false, ""},
		{"IPv6", "redis://[::1]:6379/0", "redis://[::1]:6379/0", "[::1]:6379", "tcp", 0, "", "", false, ""},
		{"UnixSocket", "unix:///run/redis.sock?db=4", "unix:///run/redis.sock?db=4", "/run/redis.sock", "unix", 4, "", "", false, ""},
		{"UnixWithPassword", "unix://:s3cret@/run/redis.sock", "unix:///run/redis.sock?db=0", "/run/redis.sock", "unix", 0, "", "s3cret", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &Config{URL: tt.url, Env: env()}
			tg, err := c.resolve()
			if err != nil {
				t.Fatalf("resolve(%q): %v", tt.url, err)
			}
			if tg.addr != tt.wantAddr {
				t.Errorf("addr = %q, want %q", tg.addr, tt.wantAddr)
			}
			o := tg.single
			if o.Addr != tt.wantDial || o.Network != tt.wantNet || o.DB != tt.wantDB || o.Username != tt.wantUser || o.Password != tt.wantPass {
				t.Errorf("options = %s %s db=%d user=%q pass=%q, want %s %s db=%d user=%q pass=%q",
					o.Network, o.Addr, o.DB, o.Username, o.Password, tt.wantNet, tt.wantDial, tt.wantDB, tt.wantUser, tt.wantPass)
			}
			if (o.TLSConfig != nil) != tt.wantTLS {
				t.Errorf("TLS = %v, want %v", o.TLSConfig != nil, tt.wantTLS)
			}
			if o.TLSConfig != nil && o.TLSConfig.ServerName != tt.wantServer {
				t.Errorf("ServerName = %q, want %q", o.TLSConfig.ServerName, tt.wantServer)
			}
			a := asynqOptions(t, tg).(*redis.Options)
			if a.Addr != o.Addr || a.Network != o.Network || a.DB != o.DB || a.Username != o.Username || a.Password != o.Password || a.TLSConfig != o.TLSConfig {
				t.Errorf("asynq's client options %s %s db=%d do not match go-redis options", a.Network, a.Addr, a.DB)
			}
			if strings.Contains(tg.addr, "s3cret") {
				t.Errorf("display address %q holds the password", tg.addr)
			}
		})
	}
}

// asynqOptions returns the options of the client asynq would make from the
// target: *redis.Options or *redis.ClusterOptions.
func asynqOptions(t *testing.T, tg *target) any {
	t.Helper()
	switch c := tg.asynq.MakeRedisClient().(type) {
	case *redis.Client:
		defer c.Close()
		return c.Options()
	case *redis.ClusterClient:
		defer c.Close()
		return c.Options()
	default:
		t.Fatalf("asynq's client is %T", c)
		return nil
	}
}

// REDIS_URL takes the options go-redis's redis.ParseURL reads from the
// query, and gives them to asynq's connections too; --redis-timeout
// (REDIS_TIMEOUT) still wins over the URL's dial_timeout.
func TestResolveURLOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		url   string
		env   []string
		check func(o *redis.Options) bool
	}{
		{"DialTimeout", "redis://h:1/0?dial_timeout=3s", nil, func(o *redis.Options) bool { return o.DialTimeout == 3*time.Second }},
		{"DialTimeoutInSeconds", "redis://h:1/0?dial_timeout=3", nil, func(o *redis.Options) bool { return o.DialTimeout == 3*time.Second }},
		{"DefaultDialTimeout", "redis://h:1/0", nil, func(o *redis.Options) bool { return o.DialTimeout == DefaultDialTimeout }},
		{"EnvTimeoutWinsOverTheURL", "redis://h:1/0?dial_timeout=3s", []string{"REDIS_TIMEOUT", "7s"}, func(o *redis.Options) bool { return o.DialTimeout == 7*time.Second }},
		{"PoolAndTimeouts", "redis://alice:hunter22@h:1/2?read_timeout=2s&write_timeout=4s&pool_size=7&max_retries=5&client_name=billing",
			nil, func(o *redis.Options) bool {
				return o.ReadTimeout == 2*time.Second && o.WriteTimeout == 4*time.Second && o.PoolSize == 7 &&
					o.MaxRetries == 5 && o.ClientName == "billing" && o.DB == 2 && o.Password == "hunter22"
			}},
		{"QueryDBOverridesThePath", "redis://h:1/2?db=5", nil, func(o *redis.Options) bool { return o.DB == 5 }},
		{"Protocol", "redis://h:1/0?protocol=2", nil, func(o *redis.Options) bool { return o.Protocol == 2 }},
		{"SkipVerify", "rediss://h:1/0?skip_verify=true", nil, func(o *redis.Options) bool {
			return o.TLSConfig != nil && o.TLSConfig.InsecureSkipVerify && o.TLSConfig.ServerName == "h"
		}},
		{"UnixSocketOptions", "unix:///run/redis.sock?db=4&dial_timeout=2s", nil, func(o *redis.Options) bool {
			return o.Network == "unix" && o.DB == 4 && o.DialTimeout == 2*time.Second
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &Config{URL: tt.url, Env: env(tt.env...)}
			tg, err := c.resolve()
			if err != nil {
				t.Fatalf("resolve(%q): %v", RedactURL(tt.url), err)
			}
			if !tt.check(tg.single) {
				t.Errorf("%s: go-redis options not as the URL says: %+v", RedactURL(tt.url), *tg.single)
			}
			if a := asynqOptions(t, tg).(*redis.Options); !tt.check(a) {
				t.Errorf("%s: asynq's client options not as the URL says", RedactURL(tt.url))
			}
			if strings.Contains(tg.addr, "hunter22") || strings.Contains(c.String(), "hunter22") {
				t.Errorf("addr %q or String() %q shows the password", tg.addr, c.String())
			}
		})
	}
}

// REDIS_URL also takes go-redis's Cluster URL (addr= names more nodes) and
// Sentinel URL (master_name=; the user information is the Sentinels', the
// master's password is password=), with their options; the display
// address and String() never hold a password.
func TestResolveClusterAndSentinelURLs(t *testing.T) {
	t.Parallel()
	t.Run("Cluster", func(t *testing.T) {
		t.Parallel()
		c := &Config{URL: "redis://bob:hunter22@c1:7000?addr=c2:7000&addr=c3:7000&read_timeout=2s&dial_timeout=4s", Env: env()}
		tg, err := c.resolve()
		if err != nil {
			t.Fatal(err)
		}
		o := tg.cluster
		if tg.kind != "cluster" || strings.Join(o.Addrs, ",") != "c1:7000,c2:7000,c3:7000" || o.Username != "bob" || o.Password != "hunter22" ||
			o.ReadTimeout != 2*time.Second || o.DialTimeout != 4*time.Second || o.TLSConfig != nil {
			t.Errorf("cluster options: kind %s addrs %v user %q read %s dial %s TLS %v", tg.kind, o.Addrs, o.Username, o.ReadTimeout, o.DialTimeout, o.TLSConfig != nil)
		}
		if want := "redis-cluster://c1:7000,c2:7000,c3:7000"; tg.addr != want {
			t.Errorf("addr = %q, want %q", tg.addr, want)
		}
		if a := asynqOptions(t, tg).(*redis.ClusterOptions); len(a.Addrs) != 3 || a.ReadTimeout != 2*time.Second {
			t.Errorf("asynq's cluster client: addrs %v read timeout %s", a.Addrs, a.ReadTimeout)
		}
	})
	t.Run("ClusterTLSWithPasswordFromEnv", func(t *testing.T) {
		t.Parallel()
		c := &Config{Env: env("REDIS_URL", "rediss://c1:7000?addr=c2:7000", "REDIS_PASSWORD", "hunter22")}
		tg, err := c.resolve()
		if err != nil {
			t.Fatal(err)
		}
		if tg.cluster.Password != "hunter22" || tg.cluster.TLSConfig == nil || tg.cluster.TLSConfig.ServerName != "" || tg.addr != "redis-clusters://c1:7000,c2:7000" {
			t.Errorf("cluster over TLS: addr %q, TLS %+v; want TLS with the server name left to each node and the password", tg.addr, tg.cluster.TLSConfig)
		}
	})
	t.Run("Sentinel", func(t *testing.T) {
		t.Parallel()
		c := &Config{URL: "redis://:sentpw1@s1:26379/2?master_name=mymaster&addr=s2:26379&password=hunter22&dial_timeout=3s", Env: env()}
		tg, err := c.resolve()
		if err != nil {
			t.Fatal(err)
		}
		f := tg.failover
		if tg.kind != "sentinel" || f.MasterName != "mymaster" || strings.Join(f.SentinelAddrs, ",") != "s1:26379,s2:26379" ||
			f.DB != 2 || f.Password != "hunter22" || f.SentinelPassword != "sentpw1" || f.DialTimeout != 3*time.Second {
			t.Errorf("failover options: kind %s master %q sentinels %v db %d dial %s", tg.kind, f.MasterName, f.SentinelAddrs, f.DB, f.DialTimeout)
		}
		if want := "redis-sentinel://s1:26379,s2:26379/2?master=mymaster"; tg.addr != want {
			t.Errorf("addr = %q, want %q", tg.addr, want)
		}
		for _, shown := range []string{tg.addr, c.String(), fmt.Sprintf("%v %+v %#v", c, c, c)} {
			if strings.Contains(shown, "hunter22") || strings.Contains(shown, "sentpw1") {
				t.Errorf("a password shows in %q", shown)
			}
		}
		if a := asynqOptions(t, tg).(*redis.Options); a.DB != 2 || a.Password != "hunter22" {
			t.Errorf("asynq's failover client: db %d, want 2 and the master's password", a.DB)
		}
	})
	t.Run("SentinelPasswordsFromEnv", func(t *testing.T) {
		t.Parallel()
		c := &Config{Env: env("REDIS_URL", "redis://s1:26379?master_name=m", "REDIS_PASSWORD", "hunter22", "REDIS_SENTINEL_PASSWORD", "sentpw2", "REDIS_USERNAME", "bob")}
		tg, err := c.resolve()
		if err != nil {
			t.Fatal(err)
		}
		if f := tg.failover; f.Password != "hunter22" || f.SentinelPassword != "sentpw2" || f.Username != "bob" {
			t.Errorf("failover credentials: user %q; want bob and both passwords from the environment", f.Username)
		}
	})
}

func TestResolveRejectsBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		env  []string
		want string // substring of the error
	}{
		{"NoScheme", Config{URL: "localhost:6379"}, nil, "no scheme"},
		{"NoSchemeWithPassword", Config{URL: "u:hunter22@localhost:6379"}, nil, "no scheme"},
		{"BadScheme", Config{URL: "http://u:hunter22@h:1"}, nil, `scheme "http"`},
		{"BadPort", Config{URL: "redis://u:hunter22@h:99999"}, nil, `port "99999"`},
		{"NonNumericPort", Config{URL: "redis://u:hunter22@h:abc/0"}, nil, "not a valid URL"},
		{"TwoPorts", Config{URL: "redis://u:hunter22@h:6379:99/0"}, nil, "more than one ':'"},
		{"BadDB", Config{URL: "redis://u:hunter22@h:1/zero"}, nil, `database "zero"`},
		{"UnescapedSlashInPassword", Config{URL: "redis://u:hunter22/x@h:1/0"}, nil, "URL-encode"},
		{"UnescapedHashInPassword", Config{URL: "redis://u:hun#ter22@h:1/0"}, nil, "URL-encode"},
		{"UnknownQuery", Config{URL: "redis://u:hunter22@h:1/0?pool_sise=3"}, nil, "unexpected option: pool_sise"},
		{"BadQueryDuration", Config{URL: "redis://u:hunter22@h:1/0?dial_timeout=3x"}, nil, "invalid dial_timeout duration"},
		{"BadQueryNumber", Config{URL: "redis://u:hunter22@h:1/0?pool_size=many"}, nil, "invalid pool_size number"},
		{"PasswordAsQuery", Config{URL: "redis://h:1/0?password=hunter22"}, nil, "unexpected option: password"},
		{"NegativeQueryDB", Config{URL: "redis://h:1/0?db=-1"}, nil, "db -1"},
		{"ClusterURLWithDB", Config{URL: "redis://u:hunter22@c1:7000/3?addr=c2:7000"}, nil, "only has database 0"},
		{"ClusterURLBadAddr", Config{URL: "redis://u:hunter22@c1:7000?addr=nocolon"}, nil, "addr param: nocolon"},
		{"ClusterURLUnknownOption", Config{URL: "redis://u:hunter22@c1:7000?addr=c2:7000&db=1"}, nil, "unexpected option: db"},
		{"SentinelURLEmptyMaster", Config{URL: "redis://s1:26379?master_name=&password=hunter22"}, nil, "master_name is empty"},
		{"SentinelURLBadOption", Config{URL: "redis://s1:26379?master_name=m&password=hunter22&dial_timeout=x"}, nil, "invalid dial_timeout duration"},
		{"SentinelURLOverUnix", Config{URL: "unix:///run/redis.sock?master_name=m"}, nil, "Sentinel (master_name=)"},
		{"NoHost", Config{URL: "redis://:hunter22@:6379/0"}, nil, "no host"},
		{"UnixNoPath", Config{URL: "unix://"}, nil, "no socket path"},
		{"URLAndCluster", Config{URL: "redis://h:1", ClusterAddrs: []string{"a:1"}}, nil, "keep one"},
		{"EnvURLAndSentinel", Config{}, []string{"REDIS_URL", "redis://h:1", "REDIS_SENTINEL_ADDRS", "s:26379", "REDIS_SENTINEL_MASTER", "m"}, "keep one"},
		{"SentinelWithoutMaster", Config{SentinelAddrs: []string{"s:26379"}}, nil, "needs both"},
		{"SentinelMasterWithoutAddrs", Config{SentinelMaster: "m"}, nil, "needs both"},
		{"SentinelBadAddr", Config{SentinelAddrs: []string{"nocolon"}, SentinelMaster: "m"}, nil, `"nocolon"`},
		{"ClusterBadAddr", Config{ClusterAddrs: []string{"a:1", "b:x"}}, nil, `"b:x"`},
		{"ClusterWithDB", Config{ClusterAddrs: []string{"a:1"}, DB: 2}, nil, "only has database 0"},
		{"DBWithURL", Config{URL: "redis://h:1"}, []string{"REDIS_DB", "3"}, "put the database in the URL"},
		{"EnvBadDB", Config{}, []string{"REDIS_DB", "three"}, `REDIS_DB="three"`},
		{"EnvBadTLS", Config{}, []string{"REDIS_TLS", "maybe"}, `REDIS_TLS="maybe"`},
		{"EnvBadTimeout", Config{}, []string{"REDIS_TIMEOUT", "5"}, `REDIS_TIMEOUT="5"`},
		{"NegativeTimeout", Config{DialTimeout: -time.Second}, nil, "negative"},
		{"MissingCA", Config{URL: "rediss://h:1", TLSCAFile: filepath.Join(dir, "missing.pem")}, nil, "--redis-tls-ca"},
		{"CAIsNotPEM", Config{URL: "rediss://h:1", TLSCAFile: notPEM}, nil, "no PEM certificate"},
		{"CertWithoutKey", Config{URL: "rediss://h:1", TLSCertFile: notPEM}, nil, "needs both"},
		{"TLSOverUnix", Config{URL: "unix:///run/redis.sock", TLS: true}, nil, "unix socket"},
		{"BadEmbeddedAddr", Config{AllowEmbedded: true, Embedded: true, EmbeddedAddr: "6379"}, nil, "--embedded-addr"},
		{"NothingWhereEmbeddedIsOffered", Config{AllowEmbedded: true}, nil, "or pass --embedded (QUOTAQ_EMBEDDED=1)"},
		{"EmbeddedAndURL", Config{AllowEmbedded: true, Embedded: true, URL: "redis://h:1"}, nil, "keep one"},
		{"EnvEmbeddedAndURL", Config{AllowEmbedded: true}, []string{"QUOTAQ_EMBEDDED", "1", "REDIS_URL", "redis://h:1"}, "keep one"},
		{"EmbeddedAndCluster", Config{Embedded: true, ClusterAddrs: []string{"a:1"}}, nil, "keep one"},
		{"EnvBadEmbedded", Config{AllowEmbedded: true}, []string{"QUOTAQ_EMBEDDED", "yes please"}, `QUOTAQ_EMBEDDED="yes please"`},
		{"EnvBadAllowEviction", Config{}, []string{"QUOTAQ_ALLOW_EVICTION", "maybe"}, `QUOTAQ_ALLOW_EVICTION="maybe"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.cfg
			c.Env = env(tt.env...)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate(%v) = nil, want an error containing %q", c, tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not match ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter") {
				t.Errorf("error %q shows the password", err)
			}
			if c.Addr() != "" {
				t.Errorf("Addr() = %q for an invalid config, want \"\"", c.Addr())
			}
		})
	}
}

func TestResolveSentinelAndCluster(t *testing.T) {
	t.Parallel()
	t.Run("SentinelFromEnv", func(t *testing.T) {
		t.Parallel()
		c := &Config{Env: env("REDIS_SENTINEL_ADDRS", " s1:26379, s2:26379 ,", "REDIS_SENTINEL_MASTER", "mymaster",
			"REDIS_PASSWORD", "hunter22", "REDIS_SENTINEL_PASSWORD", "sentpw", "REDIS_DB", "2", "REDIS_USERNAME", "bob")}
		tg, err := c.resolve()
		if err != nil {
			t.Fatal(err)
		}
		if want := "redis-sentinel://s1:26379,s2:26379/2?master=mymaster"; tg.addr != want {
			t.Errorf("addr = %q, want %q", tg.addr, want)
		}
		f := tg.failover
		if f.MasterName != "mymaster" || strings.Join(f.SentinelAddrs, ",") != "s1:26379,s2:26379" || f.DB != 2 ||
			f.Password != "hunter22" || f.SentinelPassword != "sentpw" || f.Username != "bob" {
			t.Errorf("failover options = %+v", f)
		}
		// a failover client's options are those of the master it reaches
		if a := asynqOptions(t, tg).(*redis.Options); a.DB != 2 || a.Password != "hunter22" || a.Username != "bob" {
			t.Errorf("asynq's failover client: db=%d user=%q, want 2, bob and the password", a.DB, a.Username)
		}
	})
	t.Run("ClusterWithTLSFlag", func(t *testing.T) {
		t.Parallel()
		c := &Config{ClusterAddrs: []string{"c1:7000", "c2:7000"}, TLS: true, Password: "hunter22", Env: env()}
		tg, err := c.resolve()
		if err != nil {
			t.Fatal(err)
		}
		if want := "redis-clusters://c1:7000,c2:7000"; tg.addr != want {
			t.Errorf("addr = %q, want %q", tg.addr, want)
		}
		if tg.cluster.TLSConfig == nil || tg.cluster.TLSConfig.ServerName != "" {
			t.Errorf("cluster TLS = %+v, want TLS with the server name left to each node", tg.cluster.TLSConfig)
		}
		if a := asynqOptions(t, tg).(*redis.ClusterOptions); len(a.Addrs) != 2 || a.Password != "hunter22" || a.TLSConfig == nil {
			t.Errorf("asynq's cluster client: addrs %v, TLS %v, want 2 addresses, the password and TLS", a.Addrs, a.TLSConfig != nil)
		}
	})
	t.Run("TLSServerNameAndInsecure", func(t *testing.T) {
		t.Parallel()
		c := &Config{URL: "redis://10.0.0.1:6380", TLSServerName: "redis.internal", TLSSkipVerify: true, Env: env()}
		tg, err := c.resolve()
		if err != nil {
			t.Fatal(err)
		}
		tc := tg.single.TLSConfig
		if tc == nil || tc.ServerName != "redis.internal" || !tc.InsecureSkipVerify {
			t.Errorf("TLS config = %+v, want server name redis.internal and InsecureSkipVerify", tc)
		}
		if tg.addr != "rediss://10.0.0.1:6380/0" {
			t.Errorf("addr = %q, want the rediss:// form", tg.addr)
		}
	})
	t.Run("EmbeddedOnlyWhenAskedOrByDefaultWithNothingConfigured", func(t *testing.T) {
		t.Parallel()
		for _, c := range []*Config{
			{AllowEmbedded: true, Env: env("REDIS_URL", "redis://h:1")},
			{AllowEmbedded: true, Env: env("REDIS_PASSWORD", "hunter22")},
			{AllowEmbedded: true, TLS: true, Env: env()},
			{EmbeddedByDefault: true, Env: env("REDIS_URL", "redis://h:1")},
			{Env: env("QUOTAQ_EMBEDDED", "1")}, // not offered: the variable means nothing
		} {
			tg, err := c.resolve()
			if err != nil {
				t.Fatal(err)
			}
			if tg.kind == "embedded" {
				t.Errorf("%v resolved to the embedded server; something was configured", c)
			}
		}
		for _, c := range []*Config{
			{AllowEmbedded: true, Embedded: true, Env: env()},
			{AllowEmbedded: true, Env: env("QUOTAQ_EMBEDDED", "true")},
			{EmbeddedByDefault: true, Env: env()},
		} {
			tg, err := c.resolve()
			if err != nil || tg.kind != "embedded" || tg.addr != "redis://"+DefaultEmbeddedAddr+"/0" {
				t.Errorf("%v resolved to %+v, %v; want the embedded server on the default address", c, tg, err)
			}
		}
		if err := (&Config{AllowEmbedded: true, Env: env()}).Validate(); !errors.Is(err, ErrNoRedis) || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("nothing configured where --embedded is offered: %v, want ErrNoRedis and ErrInvalidConfig", err)
		}
	})
}

func TestFlagsWinOverEnv(t *testing.T) {
	t.Parallel()
	c := &Config{Env: env("REDIS_URL", "redis://from-env:1/0", "REDIS_PASSWORD", "envpass1", "REDIS_CLUSTER_ADDRS", "")}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--redis-url", "redis://from-flag:2/1", "--redis-timeout", "2s"}); err != nil {
		t.Fatal(err)
	}
	tg, err := c.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if tg.addr != "redis://from-flag:2/1" {
		t.Errorf("addr = %q, want the flag's URL", tg.addr)
	}
	if tg.single.Password != "envpass1" {
		t.Errorf("password = %q, want the one from REDIS_PASSWORD", tg.single.Password)
	}
	if tg.single.DialTimeout != 2*time.Second {
		t.Errorf("dial timeout = %s, want 2s", tg.single.DialTimeout)
	}

	c2 := &Config{}
	fs2 := flag.NewFlagSet("test", flag.ContinueOnError)
	c2.RegisterFlags(fs2)
	if err := fs2.Parse([]string{"--redis-sentinel-addrs", "a:1, b:2", "--redis-sentinel-master", "m"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c2.SentinelAddrs, "|") != "a:1|b:2" {
		t.Errorf("sentinel addrs = %q, want [a:1 b:2]", c2.SentinelAddrs)
	}
	if fs2.Lookup("embedded-addr") != nil {
		t.Error("--embedded-addr registered although AllowEmbedded is false")
	}
	c3 := &Config{AllowEmbedded: true}
	fs3 := flag.NewFlagSet("test", flag.ContinueOnError)
	c3.RegisterFlags(fs3)
	if fs3.Lookup("embedded-addr") == nil || fs3.Lookup("embedded") == nil {
		t.Error("--embedded or --embedded-addr missing although AllowEmbedded is true")
	}
	if fs2.Lookup("embedded") != nil || fs2.Lookup("allow-eviction") == nil {
		t.Error("want --allow-eviction everywhere and --embedded only where AllowEmbedded is true")
	}
}

func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	c := Config{
		URL: "redis://alice:hunter22@h:6379/0", Password: "hunter33", SentinelPassword: "hunter44",
		TLSCAFile: "/etc/ca.pem",
	}
	var help bytes.Buffer
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(&help)
	(&Config{Env: env("REDIS_PASSWORD", "hunter55")}).RegisterFlags(fs)
	fs.PrintDefaults()
	for _, s := range []string{
		c.String(), c.GoString(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c),
		fmt.Sprintf("%v %+v %#v", &c, &c, &c), help.String(),
	} {
		if strings.Contains(s, "hunter") {
			t.Errorf("printed config shows a password: %s", s)
		}
	}
	if !strings.Contains(c.String(), "url=redis://alice:xxxxx@h:6379/0") || !strings.Contains(c.String(), "tls_ca=/etc/ca.pem") {
		t.Errorf("String() = %s, want the redacted URL and the other settings", c.String())
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"redis://h:6379/0", "redis://h:6379/0"},
		{"redis://alice:hunter22@h:6379/0", "redis://alice:xxxxx@h:6379/0"},
		{"redis://:hunter22@h:6379", "redis://:xxxxx@h:6379"},
		{"redis://alice@h:6379", "redis://alice@h:6379"},
		{"rediss://u:hun/ter#22@h:1/0", "rediss://u:xxxxx@h:1/0"},
		{"redis://u:hunt@er22@h:1", "redis://u:xxxxx@h:1"},
		{"u:hunter22@h:1", "u:xxxxx@h:1"},
		{"redis://h:1/0?dial_timeout=3s&password=hunter22", "redis://h:1/0?dial_timeout=3s&password=xxxxx"},
		{"redis://u:hunter22@h:1?master_name=m&password=hunter33&db=1", "redis://u:xxxxx@h:1?master_name=m&password=xxxxx&db=1"},
		{"redis://h:1?Sentinel_Password=hunter22#x", "redis://h:1?Sentinel_Password=xxxxx#x"},
		{"not a url", "not a url"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	got := scrub("auth p@ss/word failed (p%40ss%2Fword) ab", []string{"p@ss/word", "ab", ""})
	if strings.Contains(got, "p@ss") || strings.Contains(got, "p%40ss") {
		t.Errorf("scrub left the secret: %q", got)
	}
	if !strings.HasSuffix(got, " ab") {
		t.Errorf("scrub replaced a 2-byte secret: %q", got)
	}
}

// Compile-time check that Conn.Redis takes every client kind.
var _ = []redis.UniversalClient{(*redis.Client)(nil), (*redis.ClusterClient)(nil)}
