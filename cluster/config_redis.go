package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions builds the go-redis options of redis.*, TLS included.
func (c Config) RedisOptions() (*redis.Options, error) {
	tlsConfig, err := c.redisTLS()
	if err != nil {
		return nil, err
	}
	return &redis.Options{
		Addr:         c.Redis.Addr,
		Username:     c.Redis.Username,
		Password:     c.Redis.Password,
		DB:           c.Redis.DB,
		DialTimeout:  c.Redis.DialTimeout,
		ReadTimeout:  c.Redis.ReadTimeout,
		WriteTimeout: c.Redis.WriteTimeout,
		TLSConfig:    tlsConfig,
	}, nil
}

// PingRedis connects to Redis once, without retrying, and returns a
// *FieldError naming the field to fix: redis.addr when Redis cannot be
// reached, redis.tls when the TLS handshake fails, redis.password when the
// credentials are refused, redis.db when the database does not exist. Call it
// before starting anything. It takes at most about
// redis.dial_timeout + redis.read_timeout + redis.write_timeout.
func (c Config) PingRedis(ctx context.Context) error {
	opts, err := c.RedisOptions()
	if err != nil {
		return err
	}
	opts.MaxRetries, opts.DialerRetries, opts.PoolSize = -1, 1, 1
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout+opts.ReadTimeout+opts.WriteTimeout)
	defer cancel()
	client := redis.NewClient(opts)
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return c.redisError(ctx, err)
	}
	return nil
}

func (c Config) redisError(ctx context.Context, err error) error {
	msg, addr := err.Error(), c.Redis.Addr
	switch {
	case strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH") || strings.Contains(msg, "AUTH"):
		return &FieldError{Field: "redis.password", Err: fmt.Errorf("%s refused the credentials (redis.username, redis.password): %w", addr, err)}
	case strings.Contains(msg, "DB index is out of range"):
		return &FieldError{Field: "redis.db", Err: fmt.Errorf("no database %d at %s: %w", c.Redis.DB, addr, err)}
	case c.Redis.TLS.Enabled && (isTLSError(err) || tcpAnswers(ctx, addr, c.Redis.DialTimeout)):
		// A server that does not speak TLS often just waits: the handshake
		// times out, and only a plain TCP connection tells it from a dead host.
		return &FieldError{Field: "redis.tls", Err: fmt.Errorf("TLS handshake with %s failed (see redis.tls.*): %w", addr, err)}
	case !c.Redis.TLS.Enabled && (errors.Is(err, io.EOF) || strings.Contains(msg, "connection reset")):
		return &FieldError{Field: "redis.addr", Err: fmt.Errorf("%s closed the connection (does it require TLS? see redis.tls.enabled): %w", addr, err)}
	default:
		return &FieldError{Field: "redis.addr", Err: fmt.Errorf("cannot reach Redis at %s: %w", addr, err)}
	}
}

func tcpAnswers(ctx context.Context, addr string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func isTLSError(err error) bool {
	var (
		rh  tls.RecordHeaderError
		ver *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		ae  tls.AlertError
	)
	return errors.As(err, &rh) || errors.As(err, &ver) || errors.As(err, &ua) || errors.As(err, &he) ||
		errors.As(err, &ci) || errors.As(err, &ae) || strings.Contains(err.Error(), "tls:")
}
