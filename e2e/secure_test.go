package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/redisconn"
	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// secret is the ACL password of the secure servers: long and odd enough
// that finding it in a text cannot be a coincidence.
const secret = "Zq7-hunter2-s3cr3t-ACL"

// env returns a private environment lookup for redisconn.Config.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// noSecret fails the test when s shows the password, whole or URL-encoded.
func noSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, p := range []string{secret, "hunter2", "s3cr3t", "wrong-" + secret} {
		if strings.Contains(s, p) {
			t.Errorf("%s shows the password (%q): %s", what, p, s)
		}
	}
}

// TestTLSAndACLThroughRedisconn reaches a TLS-only redis-server whose
// certificate was signed by a CA the test made, as an ACL user (the default
// user is off), through the same connection settings the binaries use.
func TestTLSAndACLThroughRedisconn(t *testing.T) {
	t.Parallel()
	srv := redistest.NewSecureServer(t, redistest.SecureOptions{TLS: true, User: "quotaq", Password: secret})
	mtls := redistest.NewSecureServer(t, redistest.SecureOptions{TLS: true, RequireClientCert: true, User: "quotaq", Password: secret})

	open := func(t *testing.T, c redisconn.Config) (*redisconn.Conn, string, error) {
		t.Helper()
		var logs bytes.Buffer
		if c.Env == nil {
			c.Env = env()
		}
		if c.DialTimeout == 0 {
			c.DialTimeout = 3 * time.Second
		}
		conn, err := c.Open(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)))
		if conn != nil {
			t.Cleanup(func() { _ = conn.Close() })
		}
		return conn, logs.String(), err
	}

	t.Run("LimiterAndAsynqWorkOverTLSAsTheACLUser", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		c := redisconn.Config{URL: srv.URL(), TLSCAFile: srv.CAFile}
		conn, logs, err := open(t, c)
		if err != nil {
			t.Fatalf("Open(%s): %v", c.String(), err)
		}
		noSecret(t, "Open's log", logs)
		noSecret(t, "Conn.Addr", conn.Addr)
		noSecret(t, "Config.String", c.String())
		if !strings.HasPrefix(conn.Addr, "rediss://127.0.0.1:") {
			t.Errorf("Addr = %q, want rediss://127.0.0.1:port/0", conn.Addr)
		}
		if who, err := conn.Redis.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != "quotaq" {
			t.Fatalf("ACL WHOAMI = %q, %v; want quotaq", who, err)
		}
		l := throttle.New(conn.Redis, throttle.WithPrefix("tls"), throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 2}))
		var admitted int
		for i := 0; i < 5; i++ {
			r, err := l.Allow(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if r.Allowed {
				admitted++
			}
		}
		if admitted != 2 {
			t.Errorf("admitted %d of 5 over TLS, want the burst 2", admitted)
		}
		cl := asynq.NewClient(conn.Asynq)
		defer cl.Close()
		if _, err := cl.Enqueue(asynq.NewTask("tls:ping", nil), asynq.Queue("tlsq")); err != nil {
			t.Fatalf("asynq enqueue over TLS: %v", err)
		}
		insp := asynq.NewInspector(conn.Asynq)
		defer insp.Close()
		if info, err := insp.GetQueueInfo("tlsq"); err != nil || info.Pending != 1 {
			t.Fatalf("asynq queue over TLS: %+v, %v; want 1 pending", info, err)
		}
	})

	t.Run("PasswordFromEnvironment", func(t *testing.T) {
		t.Parallel()
		c := redisconn.Config{URL: "rediss://" + srv.Addr + "/0", TLSCAFile: srv.CAFile,
			Env: env("REDIS_USERNAME", "quotaq", "REDIS_PASSWORD", secret)}
		conn, logs, err := open(t, c)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		noSecret(t, "log", logs)
		noSecret(t, "Config", fmt.Sprintf("%v %+v %#v", c, c, c))
		if err := conn.Redis.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ClientCertificate", func(t *testing.T) {
		t.Parallel()
		// without one, the server refuses the handshake
		if _, _, err := open(t, redisconn.Config{URL: mtls.URL(), TLSCAFile: mtls.CAFile}); err == nil {
			t.Fatal("Open without a client certificate succeeded on a server that requires one")
		} else {
			noSecret(t, "error", err.Error())
		}
		conn, _, err := open(t, redisconn.Config{URL: mtls.URL(), TLSCAFile: mtls.CAFile,
			TLSCertFile: mtls.ClientCertFile, TLSKeyFile: mtls.ClientKeyFile})
		if err != nil {
			t.Fatalf("Open with the client certificate: %v", err)
		}
		if err := conn.Redis.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	})

	// Every way of getting it wrong fails with a clear error that never
	// shows the password.
	failures := []struct {
		name string
		c    redisconn.Config
		want []string // all in the error
	}{
		{"UntrustedCertificate", redisconn.Config{URL: srv.URL()}, []string{"certificate", srv.Addr}},
		{"WrongPassword", redisconn.Config{URL: "rediss://quotaq:wrong-" + secret + "@" + srv.Addr + "/0", TLSCAFile: srv.CAFile},
			[]string{srv.Addr}},
		{"NoUser", redisconn.Config{URL: "rediss://" + srv.Addr + "/0", TLSCAFile: srv.CAFile}, []string{srv.Addr}},
		{"PlainTextToTLSPort", redisconn.Config{URL: strings.Replace(srv.URL(), "rediss://", "redis://", 1), DialTimeout: time.Second},
			[]string{srv.Addr}},
		{"CAFileMissing", redisconn.Config{URL: srv.URL(), TLSCAFile: srv.Dir + "/no-such-ca.pem"}, []string{"no-such-ca.pem", "--redis-tls-ca"}},
		{"NotACAFile", redisconn.Config{URL: srv.URL(), TLSCAFile: srv.Dir + "/redis.log"}, []string{"no PEM certificate"}},
		{"BadURLWithPassword", redisconn.Config{URL: "rediss://quotaq:" + secret + "@" + srv.Addr + "/zero"}, []string{"database", "zero"}},
	}
	for _, f := range failures {
		t.Run("Fails/"+f.name, func(t *testing.T) {
			t.Parallel()
			conn, logs, err := open(t, f.c)
			if err == nil {
				t.Fatalf("Open(%s) succeeded (%s)", f.c.String(), conn.Addr)
			}
			if !errors.Is(err, redisconn.ErrUnreachable) && !errors.Is(err, redisconn.ErrInvalidConfig) {
				t.Errorf("error %v matches neither ErrUnreachable nor ErrInvalidConfig", err)
			}
			for _, w := range f.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			noSecret(t, "error", err.Error())
			noSecret(t, "error %+v", fmt.Sprintf("%+v %#v", err, err))
			noSecret(t, "log", logs)
		})
	}
}
