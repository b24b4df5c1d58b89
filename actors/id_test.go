package actors

import (
	"errors"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

func TestIDRoundTrip(t *testing.T) {
	for _, addr := range []string{"nonhost", "127.0.0.1:8090", "[::1]:6330", "node-7.internal.example:443"} {
		name := newName()
		id := formatID("ws", name, addr)
		if url.PathEscape(string(id)) != string(id) || url.QueryEscape(string(id)) != string(id) {
			t.Fatalf("ID %q is not URL-safe", id)
		}
		parsed, err := ParseID(string(id))
		if err != nil || parsed != id {
			t.Fatalf("ParseID(%q) = %q, %v", id, parsed, err)
		}
		pid, err := id.PID()
		if err != nil {
			t.Fatal(err)
		}
		if pid.Address != addr || pid.Id != SupervisorPrefix+"ws/"+name {
			t.Fatalf("PID of %q: %v", id, pid)
		}
		back, err := IDFromPID(pid)
		if err != nil || back != id {
			t.Fatalf("IDFromPID(%v) = %q, %v; want %q", pid, back, err, id)
		}
		if a, _ := id.Address(); a != addr {
			t.Fatalf("Address() = %q, want %q", a, addr)
		}
	}
}

func TestIDsAreUnique(t *testing.T) {
	seen := make(map[string]bool)
	for range 100_000 {
		n := newName()
		if seen[n] {
			t.Fatalf("name %q repeated", n)
		}
		seen[n] = true
	}
}

func TestInvalidIDs(t *testing.T) {
	good := string(formatID("ws", newName(), "127.0.0.1:1"))
	for _, bad := range []string{
		"", ".", "..", "ws", "ws.x", good[:len(good)-1] + "!", "Ws" + good[2:], "ws." + strings.Repeat("A", 21) + ".bm9uaG9zdA",
		"ws." + strings.Repeat("A", 23) + ".bm9uaG9zdA", "ws." + strings.Repeat("A", 22) + ".", "ws." + strings.Repeat("A", 22) + ".ICA", // address of spaces
		"waytoolongservername." + strings.Repeat("A", 22) + ".bm9uaG9zdA", good + "." + good, strings.Repeat("x", 10_000),
	} {
		if _, err := ParseID(bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q): want ErrInvalidID, got %v", bad, err)
		}
		if _, err := ID(bad).PID(); !errors.Is(err, ErrInvalidID) {
			t.Errorf("PID(%q): want ErrInvalidID, got %v", bad, err)
		}
	}
	for _, pid := range []*actor.PID{nil, actor.NewPID("nonhost", "$1"), actor.NewPID("nonhost", "wsactor-ws/short"), actor.NewPID("nonhost", "other/"+newName())} {
		if _, err := IDFromPID(pid); !errors.Is(err, ErrInvalidID) {
			t.Errorf("IDFromPID(%v): want ErrInvalidID, got %v", pid, err)
		}
	}
}

func FuzzParseID(f *testing.F) {
	f.Add(string(formatID("ws", newName(), "127.0.0.1:8090")))
	f.Add("ws.AAAAAAAAAAAAAAAAAAAAAA.bm9uaG9zdA")
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("error does not wrap ErrInvalidID: %v", err)
			}
			return
		}
		pid, err := id.PID()
		if err != nil {
			t.Fatalf("valid ID %q has no PID: %v", s, err)
		}
		back, err := IDFromPID(pid)
		if err != nil || back != id {
			t.Fatalf("round trip of %q: %q, %v", s, back, err)
		}
	})
}

// TestValidNameMatchesDecoding checks the table-driven validName against
// decoding and re-encoding, on random names and on every one-character
// change of a valid one.
func TestValidNameMatchesDecoding(t *testing.T) {
	slow := func(name string) bool {
		if len(name) != nameLen {
			return false
		}
		var raw [16]byte
		n, ok := decodeCanonical(raw[:], name)
		return ok && n == 16
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var raw [16]byte
	for range 2000 {
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		name := b64.EncodeToString(raw[:])
		if !validName(name) {
			t.Fatalf("%q: a real name refused", name)
		}
		b := []byte(name)
		pos := rng.IntN(len(b))
		b[pos] = byte(rng.Uint32())
		if got, want := validName(string(b)), slow(string(b)); got != want {
			t.Fatalf("%q: validName %v, decoding says %v", b, got, want)
		}
	}
	for c := range 256 {
		name := strings.Repeat("A", nameLen-1) + string(rune(c))
		if c >= 128 {
			name = strings.Repeat("A", nameLen-1) + string([]byte{byte(c)})
		}
		if got, want := validName(name), slow(name); got != want {
			t.Fatalf("last byte %#x: validName %v, decoding says %v", c, got, want)
		}
	}
}
