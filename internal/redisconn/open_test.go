package redisconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
)

func TestOpenEmbedded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var logs bytes.Buffer
	c := &Config{AllowEmbedded: true, Embedded: true, EmbeddedAddr: "127.0.0.1:0", Env: env()}
	conn, err := c.Open(ctx, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !conn.Embedded {
		t.Error("Embedded = false for the miniredis fallback")
	}
	if !strings.HasPrefix(conn.Addr, "redis://127.0.0.1:") || strings.HasSuffix(conn.Addr, ":0/0") {
		t.Errorf("Addr = %q, want the port actually bound", conn.Addr)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "embedded") || !strings.Contains(logs.String(), conn.Addr) {
		t.Errorf("log = %q, want one line naming the embedded server and its address", logs.String())
	}

	t.Run("TTLsExpireWithoutHelp", func(t *testing.T) {
		if err := conn.Redis.Set(ctx, "short", "v", 150*time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
		if err := conn.Redis.Set(ctx, "long", "v", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if n, _ := conn.Redis.Exists(ctx, "short").Result(); n != 1 {
			t.Fatal("key with a TTL missing right after SET")
		}
		wait.For(t, 10*time.Second, "key with a 150ms TTL expires", func() bool {
			n, err := conn.Redis.Exists(ctx, "short").Result()
			return err == nil && n == 0
		})
		if n, _ := conn.Redis.Exists(ctx, "long").Result(); n != 1 {
			t.Error("key with a 1h TTL expired too")
		}
	})

	t.Run("AsynqOptReachesTheSameServer", func(t *testing.T) {
		cl := asynq.NewClient(conn.Asynq)
		defer cl.Close()
		if _, err := cl.Enqueue(asynq.NewTask("t", nil), asynq.Queue("embq")); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Redis.LLen(ctx, "asynq:{embq}:pending").Result()
		if err != nil || n != 1 {
			t.Errorf("pending list length through Conn.Redis = %d, %v; want 1", n, err)
		}
	})

	t.Run("CloseStopsTheServer", func(t *testing.T) {
		addr := strings.TrimSuffix(strings.TrimPrefix(conn.Addr, "redis://"), "/0")
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		if err := conn.Close(); err == nil {
			t.Log("second Close returned nil") // go-redis reports a closed client; either is fine
		}
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			nc.Close()
			t.Errorf("embedded server still accepts connections on %s after Close", addr)
		}
	})
}

func TestOpenEmbeddedPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := &Config{AllowEmbedded: true, Embedded: true, EmbeddedAddr: l.Addr().String(), Env: env()}
	_, err = c.Open(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "--embedded-addr") {
		t.Errorf("Open on a busy port: %v; want an error naming the address and --embedded-addr", err)
	}
}

func TestOpenRealServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	addr := redistest.Addr(t)
	admin, prefix := redistest.Client(t)
	user, pass := "u-"+prefix, "pw-"+prefix+"-hunter"
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+pass, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })

	t.Run("URLFromEnvWithACLUser", func(t *testing.T) {
		t.Parallel()
		c := &Config{AllowEmbedded: true, Env: env("REDIS_URL", fmt.Sprintf("redis://%s:%s@%s/0", user, pass, addr))}
		conn, err := c.Open(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if conn.Embedded {
			t.Error("Embedded = true although REDIS_URL is set")
		}
		if conn.Addr != "redis://"+addr+"/0" {
			t.Errorf("Addr = %q, want redis://%s/0", conn.Addr, addr)
		}
		who, err := conn.Redis.Do(ctx, "ACL", "WHOAMI").Text()
		if err != nil || who != user {
			t.Errorf("ACL WHOAMI = %q, %v; want %q", who, err, user)
		}
		insp := asynq.NewInspector(conn.Asynq)
		defer insp.Close()
		if _, err := insp.Queues(); err != nil {
			t.Errorf("asynq inspector through Conn.Asynq: %v", err)
		}
	})

	t.Run("URLQueryOptionsReachTheServer", func(t *testing.T) {
		t.Parallel()
		name := "quotaq-" + prefix
		c := &Config{Env: env("REDIS_URL", fmt.Sprintf("redis://%s:%s@%s/0?dial_timeout=3s&client_name=%s", user, pass, addr, name))}
		conn, err := c.Open(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if got, err := conn.Redis.Do(ctx, "CLIENT", "GETNAME").Text(); err != nil || got != name {
			t.Errorf("CLIENT GETNAME = %q, %v; want %q", got, err, name)
		}
		if strings.Contains(conn.Addr, pass) || strings.Contains(conn.Addr, "?") {
			t.Errorf("Addr = %q, want the server without password or options", conn.Addr)
		}
		insp := asynq.NewInspector(conn.Asynq)
		defer insp.Close()
		if _, err := insp.Queues(); err != nil {
			t.Errorf("asynq inspector through Conn.Asynq: %v", err)
		}
	})

	t.Run("SentinelURL", func(t *testing.T) {
		t.Parallel()
		sn := redistest.NewSentinel(t)
		c := &Config{Env: env("REDIS_URL", fmt.Sprintf("redis://%s/0?master_name=%s&dial_timeout=3s", sn.Sentinel.Addr, sn.Name))}
		conn, err := c.Open(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Redis.Set(ctx, "k-"+prefix, "v", time.Minute).Err(); err != nil {
			t.Fatalf("SET through the Sentinel URL: %v", err)
		}
		direct := redis.NewClient(&redis.Options{Addr: sn.Master.Addr})
		defer direct.Close()
		if v, err := direct.Get(ctx, "k-"+prefix).Result(); err != nil || v != "v" {
			t.Errorf("the master has %q, %v; want the value written through the Sentinel URL", v, err)
		}
	})

	t.Run("WrongPasswordIsAConfigurationErrorAndRedacted", func(t *testing.T) {
		t.Parallel()
		wrong := "wrong-" + pass
		c := &Config{URL: fmt.Sprintf("redis://%s@%s/0", user, addr), Password: wrong, Env: env()}
		_, err := c.Open(ctx, nil)
		if !errors.Is(err, ErrInvalidConfig) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("Open with a wrong password: %v, want ErrInvalidConfig (not an outage)", err)
		}
		if !strings.Contains(err.Error(), "password") || strings.Contains(err.Error(), "is it running") {
			t.Errorf("error %q does not say to check the password", err)
		}
		if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), "hunter") {
			t.Errorf("error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("error %q does not name the address %s", err, addr)
		}
		var rerr redis.Error
		if !errors.As(err, &rerr) {
			t.Errorf("error %v does not wrap the server's reply", err)
		}
	})

	t.Run("NothingListeningIsUnreachableAndRedacted", func(t *testing.T) {
		t.Parallel()
		port, err := redistest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		closed := fmt.Sprintf("127.0.0.1:%d", port)
		c := &Config{URL: fmt.Sprintf("redis://alice:hunter22@%s/0", closed), DialTimeout: 2 * time.Second, Env: env()}
		_, err = c.Open(ctx, nil)
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("Open on a closed port: %v, want ErrUnreachable", err)
		}
		if strings.Contains(err.Error(), "hunter22") || !strings.Contains(err.Error(), closed) {
			t.Errorf("error = %q, want the address %s and no password", err, closed)
		}
	})
}
