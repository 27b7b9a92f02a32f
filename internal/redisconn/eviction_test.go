package redisconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
)

// TestOpenChecksTheEvictionPolicy: Open refuses a server that may evict keys,
// runs on it with AllowEviction (warning loudly), accepts noeviction
// silently, and warns and goes on when CONFIG GET is refused.
func TestOpenChecksTheEvictionPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lru := redistest.NewServer(t, "maxmemory-policy allkeys-lru")
	volatile := redistest.NewServer(t, "maxmemory-policy volatile-ttl")
	admin, prefix := redistest.Client(t)
	user, pass := "noconfig-"+prefix, "pw-"+prefix
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+pass, "~*", "&*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })

	tests := []struct {
		name       string
		cfg        Config
		wantErr    error
		wantPolicy string
		wantLog    string // "" for none
	}{
		{"AllKeysLRURefused", Config{URL: "redis://" + lru.Addr}, ErrEvictionPolicy, "", ""},
		{"VolatileRefused", Config{URL: "redis://" + volatile.Addr}, ErrEvictionPolicy, "", ""},
		{"AllKeysLRUAllowed", Config{URL: "redis://" + lru.Addr, AllowEviction: true}, nil, "allkeys-lru", "EVICTION ALLOWED"},
		{"AllowedFromEnv", Config{URL: "redis://" + volatile.Addr, Env: env("QUOTAQ_ALLOW_EVICTION", "true")}, nil, "volatile-ttl", "EVICTION ALLOWED"},
		{"NoEvictionSilent", Config{URL: "redis://" + redistest.Addr(t)}, nil, NoEviction, ""},
		{"ConfigRefusedWarns", Config{URL: fmt.Sprintf("redis://%s:%s@%s/0", user, pass, redistest.Addr(t))}, nil, "", "could not read Redis's maxmemory-policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			c := tt.cfg
			if c.Env == nil {
				c.Env = env()
			}
			conn, err := c.Open(ctx, slog.New(slog.NewTextHandler(&logs, nil)))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || errors.Is(err, ErrUnreachable) {
					t.Fatalf("Open: %v, want %v and not ErrUnreachable", err, tt.wantErr)
				}
				for _, want := range []string{"allow-eviction", "noeviction", c.URL[len("redis://"):]} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not name %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if conn.MaxmemoryPolicy != tt.wantPolicy {
				t.Errorf("MaxmemoryPolicy %q, want %q", conn.MaxmemoryPolicy, tt.wantPolicy)
			}
			if got := logs.String(); (tt.wantLog == "") != (got == "") || !strings.Contains(got, tt.wantLog) {
				t.Errorf("log %q, want %q", got, tt.wantLog)
			}
		})
	}
}

// TestOpenChecksEveryClusterMaster: a Cluster whose masters all say
// noeviction is accepted; one that allows eviction is reported.
func TestOpenChecksEveryClusterMaster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := redistest.NewCluster(t, 3)
	c := &Config{ClusterAddrs: cl.Addrs, Env: env()}
	conn, err := c.Open(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.MaxmemoryPolicy != NoEviction {
		t.Errorf("MaxmemoryPolicy %q, want noeviction", conn.MaxmemoryPolicy)
	}
	// the same Cluster through go-redis's Cluster URL (addr= names more nodes)
	byURL, err := (&Config{URL: "redis://" + cl.Addrs[0] + "?addr=" + cl.Addrs[1] + "&read_timeout=2s", Env: env()}).Open(ctx, nil)
	if err != nil {
		t.Fatalf("Open with a Cluster URL: %v", err)
	}
	if _, ok := byURL.Redis.(*redis.ClusterClient); !ok || byURL.MaxmemoryPolicy != NoEviction {
		t.Errorf("a Cluster URL opened a %T (policy %q), want a Cluster client on noeviction masters", byURL.Redis, byURL.MaxmemoryPolicy)
	}
	byURL.Close()
	// the last master changes its policy: EvictionPolicy reads every master
	last := redis.NewClient(&redis.Options{Addr: cl.Addrs[len(cl.Addrs)-1]})
	defer last.Close()
	if err := last.ConfigSet(ctx, "maxmemory-policy", "allkeys-lfu").Err(); err != nil {
		t.Fatal(err)
	}
	if p, err := conn.EvictionPolicy(ctx); err != nil || p != "allkeys-lfu" {
		t.Errorf("EvictionPolicy = %q, %v; want the one master's allkeys-lfu", p, err)
	}
	if _, err := c.Open(ctx, nil); !errors.Is(err, ErrEvictionPolicy) {
		t.Errorf("Open on a cluster with one evicting master: %v, want ErrEvictionPolicy", err)
	}
}

// TestRedisLoggerIsStructured: go-redis's own lines become slog records at
// Warn.
func TestRedisLoggerIsStructured(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	l := redisLogger{slog.New(slog.NewJSONHandler(&logs, nil))}
	l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, errors.New("connection refused"))
	got := logs.String()
	for _, want := range []string{`"level":"WARN"`, `"msg":"redis: connection pool: failed to dial after 5 attempts: connection refused"`, `"source":"go-redis"`} {
		if !strings.Contains(got, want) {
			t.Errorf("log %s lacks %s", got, want)
		}
	}
}
