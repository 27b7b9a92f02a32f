package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// tlsConfig builds the TLS settings, or returns nil when TLS is off. host is
// the server name to verify when none is configured ("" lets crypto/tls use
// the host dialled, which is what Sentinel and Cluster need).
func (r *Config) tlsConfig(on bool, host string) (*tls.Config, error) {
	if !on {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		InsecureSkipVerify: r.TLSSkipVerify, //nolint:gosec // opt-in, documented as tests only
	}
	if r.TLSServerName != "" {
		tc.ServerName = r.TLSServerName
	}
	if r.TLSCAFile != "" {
		pem, err := os.ReadFile(r.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: --redis-tls-ca (REDIS_TLS_CA): %v", ErrInvalidConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: --redis-tls-ca (REDIS_TLS_CA) %q holds no PEM certificate", ErrInvalidConfig, r.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	if (r.TLSCertFile == "") != (r.TLSKeyFile == "") {
		return nil, fmt.Errorf("%w: a client certificate needs both --redis-tls-cert (REDIS_TLS_CERT) and --redis-tls-key (REDIS_TLS_KEY)", ErrInvalidConfig)
	}
	if r.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(r.TLSCertFile, r.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: --redis-tls-cert/--redis-tls-key (%s, %s): %v", ErrInvalidConfig, r.TLSCertFile, r.TLSKeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
