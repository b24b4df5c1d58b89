package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
)

// RemoteTLS builds the TLS configurations of the remote endpoint: server for
// its gRPC server, client for dialling peers. Both are nil when
// remote.tls.enabled is false.
func (c Config) RemoteTLS() (server, client *tls.Config, err error) {
	t := c.Remote.TLS
	if !t.Enabled {
		return nil, nil, nil
	}
	cert, err := loadKeyPair("remote.tls", t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	var pool *x509.CertPool
	if t.CAFile != "" {
		if pool, err = loadCA("remote.tls.ca_file", t.CAFile); err != nil {
			return nil, nil, err
		}
	}
	server = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.RequireClientCert {
		server.ClientAuth, server.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	client = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{cert},
		RootCAs:            pool,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
	return server, client, nil
}

func (c Config) redisTLS() (*tls.Config, error) {
	t := c.Redis.TLS
	if !t.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(c.Redis.Addr)
	}
	if t.CAFile != "" {
		pool, err := loadCA("redis.tls.ca_file", t.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := loadKeyPair("redis.tls", t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadCA(field, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, &FieldError{Field: field, Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &FieldError{Field: field, Err: fmt.Errorf("%q holds no PEM certificate", path)}
	}
	return pool, nil
}

func loadKeyPair(section, certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return cert, &FieldError{Field: section + ".cert_file", Err: fmt.Errorf("cannot load %q with %s.key_file %q: %w", certFile, section, keyFile, err)}
	}
	return cert, nil
}
