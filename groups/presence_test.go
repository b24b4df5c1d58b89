package groups

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestPresenceEventJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   PresenceEvent
		json string
	}{
		{
			"lists",
			PresenceEvent{Group: "lobby", Count: 2, Lists: true,
				Joins:  []Member{{ID: "ws.a.b", User: "ann", Meta: map[string]string{"name": "Ann"}}, {ID: "ws.c.d"}},
				Leaves: []Member{{ID: "ws.e.f", Meta: map[string]string{"name": "Eve", "away": "yes"}}}},
			`{"type":"presence","group":"lobby","count":2,"joins":[{"id":"ws.a.b","name":"Ann","user":"ann"},{"id":"ws.c.d"}],"leaves":[{"away":"yes","id":"ws.e.f","name":"Eve"}]}`,
		},
		{
			"empty lists are still lists",
			PresenceEvent{Group: "g", Count: 0, Lists: true, Leaves: []Member{{ID: "ws.a.b"}}},
			`{"type":"presence","group":"g","count":0,"joins":[],"leaves":[{"id":"ws.a.b"}]}`,
		},
		{"counts only", PresenceEvent{Group: "big", Count: 10000}, `{"type":"presence","group":"big","count":10000}`},
		{"count unknown", PresenceEvent{Group: "g\"<", Count: -1, Lists: true, Joins: []Member{{ID: "ws.a.b"}}},
			`{"type":"presence","group":"g\"\u003c","joins":[{"id":"ws.a.b"}],"leaves":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.ev)
			if err != nil || string(b) != tc.json {
				t.Fatalf("Marshal = %s, %v\nwant %s", b, err, tc.json)
			}
			var back PresenceEvent
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			want := tc.ev
			if want.Lists && want.Joins == nil {
				want.Joins = []Member{}
			}
			if want.Lists && want.Leaves == nil {
				want.Leaves = []Member{}
			}
			if !reflect.DeepEqual(back, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", back, want)
			}
		})
	}
}

// A member's meta cannot pose as its ID or user.
func TestPresenceEntryKeysAreReserved(t *testing.T) {
	ev := PresenceEvent{Group: "g", Count: 1, Lists: true, Joins: []Member{
		{ID: "ws.real.id", Meta: map[string]string{"id": "ws.fake.id", "user": "admin", "name": "Mallory"}},
	}}
	b, _ := json.Marshal(ev)
	if want := `{"type":"presence","group":"g","count":1,"joins":[{"id":"ws.real.id","name":"Mallory"}],"leaves":[]}`; string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func TestPresenceEventRejectsOtherMessages(t *testing.T) {
	var ev PresenceEvent
	if err := json.Unmarshal([]byte(`{"type":"said","text":"hi"}`), &ev); !errors.Is(err, errNotPresence) {
		t.Fatalf("a said message: %v", err)
	}
	if err := json.Unmarshal([]byte(`[1]`), &ev); err == nil {
		t.Fatal("an array decoded as a presence event")
	}
}

// Above the large-group threshold, events are spaced in proportion to the
// group's size: deliveries per second stay about large/interval.
func TestPresenceSpacing(t *testing.T) {
	p := newPresence(nil, 100*time.Millisecond, 1000)
	for count, want := range map[int]time.Duration{
		-1:      100 * time.Millisecond, // unknown
		0:       100 * time.Millisecond,
		1000:    100 * time.Millisecond,
		2000:    200 * time.Millisecond,
		10000:   time.Second,
		1000000: 100 * time.Second,
	} {
		if got := p.spacing(count); got != want {
			t.Errorf("spacing(%d) = %v, want %v", count, got, want)
		}
	}
}
