package redistest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SecureOptions says how a SecureServer protects itself.
type SecureOptions struct {
	// TLS makes the server speak TLS only, with a certificate for 127.0.0.1
	// and "localhost" signed by a CA the test makes (no plain port).
	TLS bool
	// RequireClientCert makes the TLS server refuse clients without a
	// certificate signed by the same CA (tls-auth-clients yes).
	RequireClientCert bool
	// User and Password, when User is set, create an ACL user and turn the
	// default user off: a client must AUTH as User.
	User, Password string
	// Rules are the user's ACL rules; default "~* &* +@all".
	Rules string
}

// SecureServer is a redis-server with TLS and/or an ACL user, for tests.
type SecureServer struct {
	*Server
	Options SecureOptions
	// CAFile is the PEM certificate of the CA that signed the server's and
	// the client's certificates (TLS only).
	CAFile string
	// ClientCertFile and ClientKeyFile are a client certificate and key
	// signed by the CA (TLS only).
	ClientCertFile, ClientKeyFile string
	pool                          *x509.CertPool
}

// NewSecureServer starts a SecureServer in a temporary directory and stops it
// when the test ends.
func NewSecureServer(tb testing.TB, o SecureOptions, extra ...string) *SecureServer {
	tb.Helper()
	s, err := StartSecure(tb.TempDir(), o, extra...)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartSecure starts a redis-server on a free loopback port with its files
// in dir, protected as o says, and waits until it answers. With TLS it
// writes ca.pem, server.pem, server-key.pem, client.pem and client-key.pem to
// dir, made with crypto/x509 (ECDSA P-256, valid for one day).
func StartSecure(dir string, o SecureOptions, extra ...string) (*SecureServer, error) {
	return retryPortRace(func() (*SecureServer, error) { return startSecureOnce(dir, o, extra...) })
}

func startSecureOnce(dir string, o SecureOptions, extra ...string) (*SecureServer, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &SecureServer{Options: o}
	conf := []string{"port " + strconv.Itoa(port)}
	if o.TLS {
		if err := s.makeCerts(dir); err != nil {
			return nil, err
		}
		conf = []string{
			"port 0",
			"tls-port " + strconv.Itoa(port),
			"tls-cert-file " + filepath.Join(dir, "server.pem"),
			"tls-key-file " + filepath.Join(dir, "server-key.pem"),
			"tls-ca-cert-file " + s.CAFile,
			"tls-auth-clients " + map[bool]string{true: "yes", false: "no"}[o.RequireClientCert],
		}
	}
	if o.User != "" {
		rules := o.Rules
		if rules == "" {
			rules = "~* &* +@all"
		}
		conf = append(conf, "user default off", fmt.Sprintf("user %s on >%s %s", o.User, o.Password, rules))
	}
	srv, err := startConf(dir, port, append(conf, extra...), s.ping)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// TLSConfig returns the client TLS settings that trust the server's CA and
// present the client certificate; nil without TLS.
func (s *SecureServer) TLSConfig() *tls.Config {
	if !s.Options.TLS {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(s.ClientCertFile, s.ClientKeyFile)
	if err != nil {
		panic("redistest: load client certificate: " + err.Error())
	}
	return &tls.Config{RootCAs: s.pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// RedisOptions returns go-redis options that reach s as its ACL user over TLS.
func (s *SecureServer) RedisOptions() *redis.Options {
	return &redis.Options{Addr: s.Addr, Username: s.Options.User, Password: s.Options.Password, TLSConfig: s.TLSConfig()}
}

// Client returns a client of s (its user, its TLS), closed when the test ends.
func (s *SecureServer) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(s.RedisOptions())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// URL returns the redis:// or rediss:// URL of s with its user and password.
func (s *SecureServer) URL() string {
	scheme := "redis"
	if s.Options.TLS {
		scheme = "rediss"
	}
	user := ""
	if s.Options.User != "" {
		user = s.Options.User + ":" + s.Options.Password + "@"
	}
	return scheme + "://" + user + s.Addr + "/0"
}

// ping reports whether the server answers: any Redis reply counts, an error
// reply such as NOAUTH too, since it comes from a running server.
func (s *SecureServer) ping(addr string) error {
	o := &redis.Options{Addr: addr, MaxRetries: -1, Username: s.Options.User, Password: s.Options.Password}
	if s.Options.TLS {
		o.TLSConfig = s.TLSConfig()
	}
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := c.Ping(ctx).Err()
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return nil
	}
	return err
}

// startConf runs redis-server with exactly conf (plus the loopback, file and
// persistence lines every test server has) and waits until ping succeeds.
func startConf(dir string, port int, conf []string, ping func(addr string) error) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (install it: apt-get install redis-server): %w", err)
	}
	base := []string{
		"bind 127.0.0.1",
		"save \"\"",
		"appendonly no",
		"protected-mode yes",
		"dir " + dir,
		"logfile " + filepath.Join(dir, "redis.log"),
	}
	confPath := filepath.Join(dir, fmt.Sprintf("redis-%d.conf", port))
	if err := os.WriteFile(confPath, []byte(strings.Join(append(base, conf...), "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, confPath)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(s.Addr)
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("redis-server on %s exited at start: %s", s.Addr, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("redis-server on %s did not answer within 10s: %v; log: %s", s.Addr, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// makeCerts writes a CA, a server certificate for 127.0.0.1/localhost and a
// client certificate to dir.
func (s *SecureServer) makeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "quotaq test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("make test CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	s.CAFile = filepath.Join(dir, "ca.pem")
	if err := writePEM(s.CAFile, "CERTIFICATE", caDER); err != nil {
		return err
	}
	s.pool = x509.NewCertPool()
	s.pool.AddCert(caCert)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, certFile, keyFile string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("make test certificate %s: %w", name, err)
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(keyFile, "EC PRIVATE KEY", kb)
	}
	if err := leaf(2, "redis-server", x509.ExtKeyUsageServerAuth, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")); err != nil {
		return err
	}
	s.ClientCertFile, s.ClientKeyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	return leaf(3, "quotaq client", x509.ExtKeyUsageClientAuth, s.ClientCertFile, s.ClientKeyFile)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
