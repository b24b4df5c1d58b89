package redisprovider

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Options configures a Provider. The zero value is valid.
type Options struct {
	// KeyPrefix is prepended to every key and channel. Default "wsactor:".
	KeyPrefix string
	// HeartbeatInterval is how often a member refreshes its key and how often
	// every node polls the member keys. Default 1s.
	HeartbeatInterval time.Duration
	// TTL is how long a member key lives without a heartbeat: a member that
	// stops heartbeating is dropped by its peers after at most TTL plus one
	// HeartbeatInterval. It must exceed HeartbeatInterval; two or three
	// intervals tolerate a slow Redis round trip. Default 3s.
	TTL time.Duration
	// Logger receives the provider's logs. Default: the actor system's logger.
	Logger *slog.Logger
	// OnDropped is called, on a goroutine of its own, when this member finds
	// that its peers dropped it (it could not renew its key for longer than
	// TTL: a stalled process, a long pause, a partition from Redis). The
	// peers will never re-admit that member ID; the member stops renewing it
	// and waits for Rejoin, which registers it under a new one. Default nil:
	// the provider rejoins by itself at once, retrying every
	// HeartbeatInterval while Redis is unreachable.
	OnDropped func(memberID string)
}

const (
	defaultKeyPrefix         = "wsactor:"
	defaultHeartbeatInterval = time.Second
	defaultTTL               = 3 * time.Second
)

// withDefaults returns o with zero fields replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.KeyPrefix == "" {
		o.KeyPrefix = defaultKeyPrefix
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = defaultHeartbeatInterval
	}
	if o.TTL == 0 {
		o.TTL = defaultTTL
	}
	return o
}

// Validate reports whether o, after defaults are applied, is usable.
// The error names the offending field.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.HeartbeatInterval < 0 {
		errs = append(errs, fmt.Errorf("redisprovider: HeartbeatInterval %v is negative", o.HeartbeatInterval))
	}
	if o.TTL < 0 {
		errs = append(errs, fmt.Errorf("redisprovider: TTL %v is negative", o.TTL))
	}
	if o.TTL > 0 && o.HeartbeatInterval > 0 && o.TTL <= o.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("redisprovider: TTL %v must be greater than HeartbeatInterval %v", o.TTL, o.HeartbeatInterval))
	}
	if o.TTL > 0 && o.TTL < time.Millisecond {
		errs = append(errs, fmt.Errorf("redisprovider: TTL %v is below Redis's 1ms resolution", o.TTL))
	}
	return errors.Join(errs...)
}
