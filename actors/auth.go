package actors

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/transport"
)

// Close reasons of the credential checks, sent with 1008.
const (
	ReasonCredentialsExpired = "credentials expired"
	ReasonForbidden          = "forbidden"
	ReasonInvalidRefresh     = "invalid credentials"
)

// Expiry says what happens when a connection's credentials expire
// (auth.User.Expires). The zero value closes the connection with 1008
// "credentials expired" at expiry.
type Expiry struct {
	// RefreshGrace, when positive, asks the client at expiry to send new
	// credentials, and closes with 1008 only if none arrive within the grace
	// period. The server sends
	//
	//	{"type":"auth.refresh","deadline":"<RFC 3339 time>"}
	//
	// and the client answers {"type":"auth.refresh","token":"<new token>"};
	// a valid token for the same user is acknowledged with
	// {"type":"auth.refreshed","expires":"<RFC 3339 time>"}.
	// Refresh messages are consumed by the runtime, never seen by handlers.
	RefreshGrace time.Duration
	// Reauthenticate validates a refreshed token; required with RefreshGrace.
	Reauthenticate func(token string) (*auth.User, error)
	// Permissions are checked again against the refreshed user.
	Permissions []auth.Permission
}

type expiryCheck struct{}

// refreshMessage is the runtime's refresh protocol, both ways.
type refreshMessage struct {
	Type     string `json:"type"`
	Token    string `json:"token,omitempty"`
	Deadline string `json:"deadline,omitempty"`
	Expires  string `json:"expires,omitempty"`
}

const (
	typeRefresh   = "auth.refresh"
	typeRefreshed = "auth.refreshed"
)

var refreshMarker = []byte(`"` + typeRefresh + `"`)

// Authorize checks permissions against the connection's current user, for
// checks that must hold for the whole connection, not only at the handshake.
// On denial it closes the connection with 1008 "forbidden" and returns the
// error (wrapping auth.ErrForbidden).
func (c *Conn) Authorize(permissions ...auth.Permission) error {
	if err := auth.Check(c.User(), c, permissions...); err != nil {
		_ = c.Close(transport.StatusPolicyViolation, ReasonForbidden)
		return err
	}
	return nil
}

// armExpiry schedules the next credential check for the current user.
func (c *Conn) armExpiry(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiryT != nil {
		c.expiryT.Stop()
		c.expiryT = nil
	}
	if at.IsZero() || c.closed {
		return
	}
	c.expiryT = time.AfterFunc(time.Until(at), func() { c.rt.system.Root.Send(c.pid, expiryCheck{}) })
}

// onExpiryCheck runs on the actor goroutine when a deadline passes.
func (c *Conn) onExpiryCheck() {
	u := c.User()
	if u == nil || u.Expires.IsZero() || time.Now().Before(u.Expires) {
		return // refreshed meanwhile
	}
	if c.expiry.RefreshGrace <= 0 || c.expiry.Reauthenticate == nil {
		_ = c.Close(transport.StatusPolicyViolation, ReasonCredentialsExpired)
		return
	}
	if c.refreshDue.IsZero() {
		c.refreshDue = time.Now().Add(c.expiry.RefreshGrace)
		_ = c.SendJSON(refreshMessage{Type: typeRefresh, Deadline: c.refreshDue.UTC().Format(time.RFC3339Nano)})
		c.armExpiry(c.refreshDue)
		return
	}
	if !time.Now().Before(c.refreshDue) {
		_ = c.Close(transport.StatusPolicyViolation, ReasonCredentialsExpired)
	}
}

// interceptRefresh consumes a client's refresh message; it reports whether
// the frame was one.
func (c *Conn) interceptRefresh(f transport.Frame) bool {
	// Only a connection that authenticated at the handshake refreshes: an
	// anonymous one must not become someone mid-connection behind its
	// handler's back.
	if c.expiry.Reauthenticate == nil || f.Type != transport.MessageText || c.User() == nil || !bytes.Contains(f.Data, refreshMarker) {
		return false
	}
	var m refreshMessage
	if json.Unmarshal(f.Data, &m) != nil || m.Type != typeRefresh {
		return false
	}
	old := c.User()
	u, err := c.expiry.Reauthenticate(m.Token)
	switch {
	case err != nil || u == nil:
		c.Logger().Debug("wsactor: credential refresh refused", slog.Any("err", err))
		_ = c.Close(transport.StatusPolicyViolation, ReasonInvalidRefresh)
	case u.ID != old.ID:
		c.Logger().Warn("wsactor: credential refresh for another user refused", slog.String("user", old.ID), slog.String("new_user", u.ID))
		_ = c.Close(transport.StatusPolicyViolation, ReasonInvalidRefresh)
	default:
		if err := auth.Check(u, c, c.expiry.Permissions...); err != nil {
			_ = c.Close(transport.StatusPolicyViolation, ReasonForbidden)
			return true
		}
		c.user.Store(u)
		c.refreshDue = time.Time{}
		c.armExpiry(u.Expires)
		ack := refreshMessage{Type: typeRefreshed}
		if !u.Expires.IsZero() {
			ack.Expires = u.Expires.UTC().Format(time.RFC3339Nano)
		}
		_ = c.SendJSON(ack)
	}
	return true
}
