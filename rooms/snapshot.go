package rooms

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/wsactor/wsactor/actors"
)

// snapshotDoc is what the store keeps of a room: the seats (the runtime's
// part, so that players can take them back after a move) and the game's own
// state (a Snapshotter's bytes).
type snapshotDoc struct {
	V      int               `json:"v"`
	Seats  []seatDoc         `json:"seats,omitempty"`
	Label  map[string]string `json:"label,omitempty"`
	Locked bool              `json:"locked,omitempty"`
	App    []byte            `json:"app,omitempty"`
}

type seatDoc struct {
	Seat   int               `json:"seat"`
	ID     actors.ID         `json:"id"`
	User   string            `json:"user,omitempty"`
	Meta   map[string]string `json:"meta,omitempty"`
	Token  []byte            `json:"token"` // the SHA-256 of its secret
	Joined time.Time         `json:"joined"`
}

const snapshotVersion = 1

func decodeSnapshot(b []byte) (*snapshotDoc, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var d snapshotDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("rooms: unreadable snapshot: %w", err)
	}
	if d.V != snapshotVersion {
		return nil, fmt.Errorf("rooms: snapshot version %d; this node reads %d", d.V, snapshotVersion)
	}
	for _, s := range d.Seats {
		if len(s.Token) != 32 || s.Seat < 0 {
			return nil, fmt.Errorf("rooms: snapshot has a malformed seat %d", s.Seat)
		}
	}
	return &d, nil
}
