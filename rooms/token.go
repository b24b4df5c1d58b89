package rooms

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
)

// A reconnection token names its room and seat, so that any node can route
// it, and carries 128 random bits, which only the room can check: it keeps
// their SHA-256 (in its snapshots too), never the token.
//
//	<base64url(kind/name)>.<seat>.<base64url(secret)>

const tokenSecretLen = 16

var b64 = base64.RawURLEncoding

// newToken returns a token for seat of key, and its hash.
func newToken(key Key, seat int) (string, [32]byte) {
	secret := make([]byte, tokenSecretLen)
	_, _ = rand.Read(secret)
	return b64.EncodeToString([]byte(key.String())) + "." + strconv.Itoa(seat) + "." + b64.EncodeToString(secret), sha256.Sum256(secret)
}

// parseToken splits a token; ok is false for anything malformed.
func parseToken(tok string) (key Key, seat int, secret []byte, ok bool) {
	if len(tok) > 512 {
		return Key{}, 0, nil, false
	}
	room, rest, ok1 := strings.Cut(tok, ".")
	seatStr, sec, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return Key{}, 0, nil, false
	}
	rb, err := b64.DecodeString(room)
	if err != nil {
		return Key{}, 0, nil, false
	}
	kind, name, found := strings.Cut(string(rb), "/")
	if !found || !kindPattern.MatchString(kind) || !ValidName(name) {
		return Key{}, 0, nil, false
	}
	seat, err = strconv.Atoi(seatStr)
	if err != nil || seat < 0 || seatStr != strconv.Itoa(seat) {
		return Key{}, 0, nil, false
	}
	secret, err = b64.DecodeString(sec)
	if err != nil || len(secret) != tokenSecretLen {
		return Key{}, 0, nil, false
	}
	return Key{Kind: kind, Name: name}, seat, secret, true
}

// checkSecret reports whether secret is the one whose hash the seat keeps.
func checkSecret(secret []byte, hash [32]byte) bool {
	sum := sha256.Sum256(secret)
	return subtle.ConstantTimeCompare(sum[:], hash[:]) == 1
}
