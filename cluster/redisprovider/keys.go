package redisprovider

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
)

// keyspace names the keys and channel of one cluster.
type keyspace struct {
	memberPrefix   string // <prefix>cluster:<name>:member:
	departedPrefix string // <prefix>cluster:<name>:departed:
	channel        string // <prefix>cluster:<name>:events
}

func newKeyspace(prefix, clusterName string) keyspace {
	base := prefix + "cluster:" + clusterName + ":"
	return keyspace{memberPrefix: base + "member:", departedPrefix: base + "departed:", channel: base + "events"}
}

func (k keyspace) member(id string) string { return k.memberPrefix + id }

// departed is the key of the tombstone that marks member id as dropped by
// its peers: protoactor never re-admits a member ID that left a topology, so
// a member that finds its own tombstone must rejoin under a new ID.
func (k keyspace) departed(id string) string { return k.departedPrefix + id }

// match is the SCAN pattern for every member key; glob characters in the
// prefix or cluster name are escaped.
func (k keyspace) match() string { return escapeGlob(k.memberPrefix) + "*" }

// memberID returns the id part of a member key.
func (k keyspace) memberID(key string) (string, bool) {
	id, ok := strings.CutPrefix(key, k.memberPrefix)
	return id, ok && id != ""
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// record is the value of a member key.
type record struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"`
	Port      int       `json:"port"`
	Kinds     []string  `json:"kinds"`
	StartedAt time.Time `json:"started_at"`
}

func (r *record) encode() ([]byte, error) { return json.Marshal(r) }

func decodeRecord(b []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (r *record) member() *cluster.Member {
	return &cluster.Member{
		Id:    r.ID,
		Host:  r.Host,
		Port:  int32(r.Port),
		Kinds: append([]string(nil), r.Kinds...),
	}
}

const (
	eventJoin  = "join"
	eventLeave = "leave"
)

// event is a message on the events channel. Events only wake peers up: the
// member keys remain the source of truth.
type event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

func encodeEvent(typ, id string) string {
	b, _ := json.Marshal(event{Type: typ, ID: id}) // cannot fail for two strings
	return string(b)
}
