package actors

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
)

// ID identifies a connection everywhere in a wsactor system: it is the
// connection actor's PID in a string form that is URL-safe and round-trips.
//
// Its form is "<server>.<name>.<node>": the server's name (it names the
// supervisor the connection actor is a child of), 22 characters of base64url
// carrying 128 random bits (the actor's name, so IDs are unguessable and never
// reused, even by a process restarted on the same address), and the node's
// actor-system address in base64url, so an ID minted on another cluster node
// routes to that node. Treat an ID as opaque; use ParseID to validate one.
type ID string

// ErrInvalidID is returned (wrapped) for a string that is not a connection ID.
var ErrInvalidID = errors.New("wsactor: invalid connection ID")

const (
	nameLen       = 22 // base64url of 16 random bytes, unpadded
	maxAddressLen = 255
	// SupervisorPrefix starts the name of every connection supervisor actor.
	SupervisorPrefix = "wsactor-"
)

var b64 = base64.RawURLEncoding

// ValidServerName reports whether s may name a server: 1–16 lowercase ASCII
// letters or digits, so that it needs no escaping inside an ID.
func ValidServerName(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// newName returns a fresh random actor name.
func newName() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return b64.EncodeToString(b[:])
}

func formatID(server, name, address string) ID {
	return ID(server + "." + name + "." + b64.EncodeToString([]byte(address)))
}

// ParseID validates s and returns it as an ID. It never panics.
func ParseID(s string) (ID, error) {
	if _, _, _, err := splitID(s); err != nil {
		return "", err
	}
	return ID(s), nil
}

func splitID(s string) (server, name, address string, err error) {
	fail := func(why string) (string, string, string, error) {
		return "", "", "", fmt.Errorf("%w: %s", ErrInvalidID, why)
	}
	if len(s) > 16+1+nameLen+1+maxAddress64 {
		return fail("too long")
	}
	server, rest, ok := strings.Cut(s, ".")
	if !ok {
		return fail("missing separators")
	}
	name, addr64, ok := strings.Cut(rest, ".")
	if !ok {
		return fail("missing node address")
	}
	if !ValidServerName(server) {
		return fail("bad server name")
	}
	if len(name) != nameLen {
		return fail("bad actor name length")
	}
	if !validName(name) {
		return fail("bad actor name")
	}
	var raw [maxAddressLen]byte
	n, ok := decodeCanonical(raw[:], addr64)
	if !ok || n == 0 {
		return fail("bad node address")
	}
	for _, ch := range raw[:n] {
		if ch <= ' ' || ch > '~' {
			return fail("bad node address")
		}
	}
	return server, name, string(raw[:n]), nil
}

// validName reports whether name is an actor name as newName makes them.
func validName(name string) bool {
	if len(name) != nameLen {
		return false
	}
	// Every send by ID to another node checks its name, so this is a table
	// lookup per character rather than a decode and an encode.
	for i := range len(name) {
		if b64Values[name[i]] < 0 {
			return false
		}
	}
	// 22 characters carry 132 bits, of which the name's 16 bytes use 128:
	// the last character's low 4 bits must be 0, or another string would
	// decode to the same name.
	return b64Values[name[nameLen-1]]&0x0f == 0
}

// b64Values maps a base64url character to its 6-bit value, and any other
// byte to -1.
var b64Values = func() (v [256]int8) {
	for i := range v {
		v[i] = -1
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(alphabet) {
		v[alphabet[i]] = int8(i)
	}
	return v
}()

// maxAddress64 is the longest base64url node address: b64.EncodedLen(maxAddressLen).
const maxAddress64 = (maxAddressLen*8 + 5) / 6

// decodeCanonical decodes the base64url s into dst and reports whether s is
// the one encoding of what it decodes to: decoding is lenient about the
// unused bits of the last character, and one connection must have exactly
// one ID string. It works in stack buffers (every send parses an ID), so s
// must be at most maxAddress64 long and dst must hold what it decodes to.
func decodeCanonical(dst []byte, s string) (int, bool) {
	var src, again [maxAddress64]byte
	if len(s) > len(src) || b64.DecodedLen(len(s)) > len(dst) {
		return 0, false
	}
	n, err := b64.Decode(dst, src[:copy(src[:], s)])
	if err != nil {
		return 0, false
	}
	b64.Encode(again[:], dst[:n])
	return n, string(again[:b64.EncodedLen(n)]) == s
}

// PID returns the connection actor's PID.
func (id ID) PID() (*actor.PID, error) {
	server, name, address, err := splitID(string(id))
	if err != nil {
		return nil, err
	}
	return actor.NewPID(address, SupervisorPrefix+server+"/"+name), nil
}

// Address returns the actor-system address of the node that owns the
// connection.
func (id ID) Address() (string, error) {
	_, _, address, err := splitID(string(id))
	return address, err
}

// IDFromPID returns the ID of a connection actor's PID, or an error if pid is
// not a connection actor.
func IDFromPID(pid *actor.PID) (ID, error) {
	if pid == nil {
		return "", fmt.Errorf("%w: nil PID", ErrInvalidID)
	}
	parent, name, ok := strings.Cut(pid.Id, "/")
	server, isSup := strings.CutPrefix(parent, SupervisorPrefix)
	if !ok || !isSup {
		return "", fmt.Errorf("%w: %q is not a connection actor", ErrInvalidID, pid.Id)
	}
	return ParseID(string(formatID(server, name, pid.Address)))
}

// String returns the ID itself.
func (id ID) String() string { return string(id) }
