package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsactor/wsactor/internal/wire"
	"google.golang.org/protobuf/proto"
)

// Errors of messages that cross nodes.
var (
	// ErrNotRegistered: a message for an actor on another node is neither a
	// protobuf message nor of a type registered with RegisterMessage. The
	// error names the type.
	ErrNotRegistered = errors.New("wsactor: message type not registered for other nodes")
	// ErrUnknownMessage: a message from another node carries a registered
	// name this node does not know (a node running an older version, or a
	// type registered on some nodes only).
	ErrUnknownMessage = errors.New("wsactor: unknown message name from another node")
)

// registeredType is one RegisterMessage call.
type registeredType struct {
	name   string
	typ    reflect.Type
	decode func(data []byte) (any, error)
}

// registry is immutable once published: RegisterMessage copies it, so that
// lookups on the send and receive paths take no lock.
type registry struct {
	byName map[string]*registeredType
	byType map[reflect.Type]*registeredType
}

var (
	registerMu   sync.Mutex // serializes writers of messageTypes
	messageTypes atomic.Pointer[registry]
)

func init() {
	messageTypes.Store(&registry{byName: map[string]*registeredType{}, byType: map[reflect.Type]*registeredType{}})
}

var protoMessageType = reflect.TypeFor[proto.Message]()

// RegisterMessage registers T under name, so that values of T can be sent to
// actors on other nodes (Server.Tell, the Conn actor methods). The name is
// what crosses the network, not the Go type's path: choose a stable one
// ("game.Move"), and keep it when the type is renamed or moved. Register at
// init, on every node: a node must know a name before any node sends it.
//
// A value crosses as its encoding/json encoding (exported fields, or the
// type's own MarshalJSON) and arrives as a value of exactly the registered
// type: register Move and send a Move, it arrives as a Move; register *Move
// and send a *Move, it arrives as a *Move (a nil *Move as a nil *Move). A
// *Move is refused when only Move is registered, because the receiver would
// get another type than a local Tell delivers.
//
// Protobuf messages need no registration: they cross as they are.
// RegisterMessage panics, as http.Handle does for a pattern registered
// twice, on an empty name, a name already used by another type, a type
// already registered under another name, an interface type or a protobuf
// message type. Registering the same type under the same name again does
// nothing.
func RegisterMessage[T any](name string) {
	typ := reflect.TypeFor[T]()
	switch {
	case name == "":
		panic(fmt.Sprintf("wsactor: RegisterMessage[%v]: empty name", typ))
	case typ.Kind() == reflect.Interface:
		panic(fmt.Sprintf("wsactor: RegisterMessage[%v]: an interface type; register the concrete types that are sent", typ))
	case typ.Implements(protoMessageType):
		panic(fmt.Sprintf("wsactor: RegisterMessage[%v]: a protobuf message; those cross nodes as they are and need no registration", typ))
	}
	registerMu.Lock()
	defer registerMu.Unlock()
	old := messageTypes.Load()
	if r := old.byName[name]; r != nil {
		if r.typ == typ {
			return
		}
		panic(fmt.Sprintf("wsactor: RegisterMessage[%v](%q): the name is already registered for %v", typ, name, r.typ))
	}
	if r := old.byType[typ]; r != nil {
		panic(fmt.Sprintf("wsactor: RegisterMessage[%v](%q): the type is already registered as %q", typ, name, r.name))
	}
	r := &registeredType{name: name, typ: typ, decode: func(data []byte) (any, error) {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, err
		}
		return v, nil
	}}
	next := &registry{byName: make(map[string]*registeredType, len(old.byName)+1), byType: make(map[reflect.Type]*registeredType, len(old.byType)+1)}
	for k, v := range old.byName {
		next.byName[k] = v
	}
	for k, v := range old.byType {
		next.byType[k] = v
	}
	next.byName[name], next.byType[typ] = r, r
	messageTypes.Store(next)
}

// EncodeValue returns v as it crosses to another node: a protobuf message as
// it is, a value of a registered type in its envelope. Anything else is an
// error wrapping ErrNotRegistered that names the type, and a value that
// encoding/json cannot encode (a channel, a function, a cyclic pointer) is an
// error too: both are the sender's to see, never a silent drop.
//
// wsactor encodes for its own sends; call EncodeValue to send through
// protoactor directly to an actor on another node, which calls DecodeValue.
func EncodeValue(v any) (proto.Message, error) {
	if m, ok := v.(proto.Message); ok {
		return m, nil
	}
	reg := messageTypes.Load()
	typ := reflect.TypeOf(v)
	r := reg.byType[typ]
	if r == nil {
		return nil, notRegistered(reg, typ)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("wsactor: encode %v (registered as %q) as JSON for another node: %w", typ, r.name, err)
	}
	return &wire.Value{Name: r.name, Json: data}, nil
}

func notRegistered(reg *registry, typ reflect.Type) error {
	if typ == nil {
		return fmt.Errorf("%w: nil (send a value of a registered type)", ErrNotRegistered)
	}
	hint := ""
	if typ.Kind() == reflect.Pointer && reg.byType[typ.Elem()] != nil {
		hint = fmt.Sprintf("; %v is registered: send a %v", typ.Elem(), typ.Elem())
	} else if r := reg.byType[reflect.PointerTo(typ)]; r != nil {
		hint = fmt.Sprintf("; %v is registered: send a %v", r.typ, r.typ)
	}
	return fmt.Errorf("%w: %v (call wsactor.RegisterMessage[%v](name) at init on every node%s)", ErrNotRegistered, typ, typ, hint)
}

// DecodeValue returns what a message from another node stands for: the value
// of its registered type for an envelope EncodeValue made, and any other
// message as it is. An envelope whose name this node does not know is an
// error wrapping ErrUnknownMessage, and one whose JSON does not fit the
// registered type is an error too; the receiver drops such a message (see
// WarnUndecodable). Connection actors decode before Receive; other actors
// that receive from other nodes, and futures of requests to them, call it.
func DecodeValue(m any) (any, error) {
	env, ok := m.(*wire.Value)
	if !ok {
		return m, nil
	}
	r := messageTypes.Load().byName[env.GetName()]
	if r == nil {
		return nil, fmt.Errorf("%w: %q (register its type with RegisterMessage on this node too)", ErrUnknownMessage, env.GetName())
	}
	v, err := r.decode(env.GetJson())
	if err != nil {
		return nil, fmt.Errorf("wsactor: decode message %q into %v: %w", env.GetName(), r.typ, err)
	}
	return v, nil
}

// WarnUndecodable logs a message that DecodeValue refused, at Warn, at most
// once per message name per minute in the process: a peer that sends a name
// this node does not know sends it often, and the log must stay readable.
// Callers count every such message themselves.
func WarnUndecodable(logger *slog.Logger, m any, err error) {
	name := ""
	if env, ok := m.(*wire.Value); ok {
		name = env.GetName()
	}
	if !undecodableWarnings.allow(name, time.Now()) {
		return
	}
	logger.Warn("wsactor: message from another node dropped: it could not be decoded; every node must register a message's type before any node sends it",
		slog.String("name", name), slog.Any("err", err))
}

var undecodableWarnings = warnGate{every: time.Minute, max: 1024}

// warnGate lets one log line per key through per interval. It remembers at
// most max keys: names come from other nodes.
type warnGate struct {
	every time.Duration
	max   int

	mu   sync.Mutex
	last map[string]time.Time
}

func (g *warnGate) allow(key string, now time.Time) bool {
	const maxKey = 256
	if len(key) > maxKey {
		key = key[:maxKey]
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.last[key]; ok && now.Sub(t) < g.every {
		return false
	}
	if g.last == nil {
		g.last = make(map[string]time.Time)
	}
	if len(g.last) >= g.max {
		for k, t := range g.last {
			if now.Sub(t) >= g.every {
				delete(g.last, k)
			}
		}
		if len(g.last) >= g.max {
			clear(g.last) // a flood of distinct names: log again rather than grow
		}
	}
	g.last[key] = now
	return true
}
