package actors

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wsactor/wsactor/internal/wire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type (
	regPoint struct {
		X, Y   int
		hidden int // unexported: does not cross, as with encoding/json
	}
	regToken  struct{ Value string }
	regOther  struct{}
	regSecond struct{}
	regCustom struct{ n int }
)

func (c regCustom) MarshalJSON() ([]byte, error) { return fmt.Appendf(nil, "%d", c.n), nil }
func (c *regCustom) UnmarshalJSON(b []byte) error {
	_, err := fmt.Sscan(string(b), &c.n)
	return err
}

func init() {
	RegisterMessage[regPoint]("actors-test.point")
	RegisterMessage[*regToken]("actors-test.token")
	RegisterMessage[regCustom]("actors-test.custom")
}

func wantPanic(t *testing.T, what, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("%s: no panic", what)
		}
		if !strings.Contains(fmt.Sprint(r), want) {
			t.Fatalf("%s: panic %q should say %q", what, r, want)
		}
	}()
	f()
}

func TestRegisterMessageRefusesProgrammingErrors(t *testing.T) {
	wantPanic(t, "a name used by another type", `("actors-test.point"): the name is already registered for actors.regPoint`,
		func() { RegisterMessage[regOther]("actors-test.point") })
	wantPanic(t, "a type under a second name", `the type is already registered as "actors-test.point"`,
		func() { RegisterMessage[regPoint]("actors-test.point.v2") })
	wantPanic(t, "an empty name", "empty name", func() { RegisterMessage[regSecond]("") })
	wantPanic(t, "an interface type", "an interface type", func() { RegisterMessage[fmt.Stringer]("actors-test.stringer") })
	wantPanic(t, "a protobuf message", "need no registration", func() { RegisterMessage[*wrapperspb.StringValue]("actors-test.proto") })
	// The same registration again is harmless (two packages of one program
	// may both make sure of it).
	RegisterMessage[regPoint]("actors-test.point")
	// None of the refused calls registered anything.
	for _, name := range []string{"actors-test.point.v2", "", "actors-test.stringer", "actors-test.proto"} {
		if messageTypes.Load().byName[name] != nil {
			t.Fatalf("%q was registered by a call that panicked", name)
		}
	}
}

func roundTrip(t *testing.T, v any) any {
	t.Helper()
	m, err := EncodeValue(v)
	if err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	// What the remote endpoint does: marshal, and unmarshal on the other side.
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m2 := m.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(b, m2); err != nil {
		t.Fatal(err)
	}
	out, err := DecodeValue(m2)
	if err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	return out
}

func TestEncodeDecodeValue(t *testing.T) {
	if got := roundTrip(t, regPoint{X: 1, Y: 2, hidden: 3}); got != (regPoint{X: 1, Y: 2}) {
		t.Fatalf("a value type arrives as that type, exported fields only: %#v", got)
	}
	if got, ok := roundTrip(t, &regToken{Value: "t"}).(*regToken); !ok || got.Value != "t" {
		t.Fatalf("a pointer type arrives as a pointer: %#v", got)
	}
	if got, ok := roundTrip(t, (*regToken)(nil)).(*regToken); !ok || got != nil {
		t.Fatalf("a nil pointer arrives as a nil pointer of its type: %#v", got)
	}
	if got := roundTrip(t, regCustom{n: 7}); got != (regCustom{n: 7}) {
		t.Fatalf("a type's own JSON methods are used: %#v", got)
	}
	pm := wrapperspb.Int64(5)
	m, err := EncodeValue(pm)
	if err != nil || m != pm {
		t.Fatalf("a protobuf message crosses as it is: %v, %v", m, err)
	}
	if got := roundTrip(t, pm); !proto.Equal(got.(proto.Message), pm) {
		t.Fatalf("a protobuf message decodes as itself: %v", got)
	}
	if m, _ := EncodeValue(regPoint{X: 1}); m.(*wire.Value).GetName() != "actors-test.point" {
		t.Fatalf("the registered name crosses: %v", m)
	}
}

func TestEncodeValueErrors(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{regOther{}, "actors.regOther (call wsactor.RegisterMessage[actors.regOther](name) at init on every node)"},
		{&regPoint{}, "; actors.regPoint is registered: send a actors.regPoint"},
		{regToken{}, "; *actors.regToken is registered: send a *actors.regToken"},
		{nil, "nil"},
		{42, "int"},
	} {
		_, err := EncodeValue(tc.v)
		if !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("EncodeValue(%#v): want ErrNotRegistered saying %q, got %v", tc.v, tc.want, err)
		}
	}
}

func TestDecodeValueErrors(t *testing.T) {
	_, err := DecodeValue(&wire.Value{Name: "actors-test.nobody", Json: []byte("{}")})
	if !errors.Is(err, ErrUnknownMessage) || !strings.Contains(err.Error(), `"actors-test.nobody"`) {
		t.Fatalf("unknown name: %v", err)
	}
	_, err = DecodeValue(&wire.Value{Name: "actors-test.point", Json: []byte(`{"X":"one"}`)})
	if err == nil || errors.Is(err, ErrUnknownMessage) || !strings.Contains(err.Error(), "actors.regPoint") {
		t.Fatalf("JSON that does not fit the type: %v", err)
	}
	if v, err := DecodeValue("a local value"); v != "a local value" || err != nil {
		t.Fatalf("anything else is returned as it is: %v, %v", v, err)
	}
}

func TestWarnUndecodableOncePerNamePerMinute(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	name := fmt.Sprintf("actors-test.warn.%d", time.Now().UnixNano())
	for range 3 {
		m := &wire.Value{Name: name}
		_, err := DecodeValue(m)
		WarnUndecodable(logger, m, err)
	}
	m := &wire.Value{Name: name + ".other"}
	_, err := DecodeValue(m)
	WarnUndecodable(logger, m, err)
	logs := buf.String()
	if n := strings.Count(logs, "level=WARN"); n != 2 {
		t.Fatalf("want one line per name, got %d:\n%s", n, logs)
	}
	if !strings.Contains(logs, "name="+name+" ") || !strings.Contains(logs, "unknown message name") {
		t.Fatalf("the line names the message and the error:\n%s", logs)
	}
}

func TestWarnGate(t *testing.T) {
	g := warnGate{every: time.Minute, max: 3}
	t0 := time.Now()
	if !g.allow("a", t0) || g.allow("a", t0.Add(59*time.Second)) || !g.allow("a", t0.Add(time.Minute)) {
		t.Fatal("one line per key per minute")
	}
	for i := range 10 {
		g.allow(fmt.Sprint("flood", i), t0.Add(time.Minute))
	}
	if len(g.last) > 3 {
		t.Fatalf("the gate remembers at most max keys: %d", len(g.last))
	}
	long := strings.Repeat("x", 10_000)
	g.allow(long, t0)
	for k := range g.last {
		if len(k) > 256 {
			t.Fatalf("a key of %d bytes is kept whole", len(k))
		}
	}
}

// BenchmarkEncodeDecodeValue is the cost a registered type adds to a
// cross-node Tell, besides the network: JSON both ways and the envelope.
func BenchmarkEncodeDecodeValue(b *testing.B) {
	v := regPoint{X: 12, Y: 34}
	b.ReportAllocs()
	for b.Loop() {
		m, err := EncodeValue(v)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeValue(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnValue is Conn.Value with a few values set, read from many
// goroutines: an atomic load and a map lookup, no lock.
func BenchmarkConnValue(b *testing.B) {
	type key int
	c := &Conn{}
	for i := range 4 {
		c.SetValue(key(i), i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c.Value(key(2)) != 2 {
				b.Fatal("lost a value")
			}
		}
	})
}
