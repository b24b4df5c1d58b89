package gameserver

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wsactor/wsactor"
)

// The protocol, documented in examples/game/README.md.

// Server → client messages.
type (
	// WelcomeMsg is the first message of a connection that has a seat.
	WelcomeMsg struct {
		Type  string     `json:"type"` // "welcome"
		ID    wsactor.ID `json:"id"`
		Room  string     `json:"room"`
		Seat  int        `json:"seat"`
		Token string     `json:"token"`
		Node  string     `json:"node"`
		// Again is true when the connection took back a held seat
		// (reconnected with its token, or after the room moved nodes).
		Again bool `json:"again"`
		// Width and Height size the arena; Speed is a dot's speed.
		Width  float64 `json:"width"`
		Height float64 `json:"height"`
		Speed  float64 `json:"speed"`
	}
	// StateMsg is the room's state, every tick.
	StateMsg struct {
		Type    string        `json:"type"` // "state"
		Tick    int64         `json:"tick"`
		Players []PlayerState `json:"players"`
		Items   []Coin        `json:"items"`
	}
	// PlayerState is one player in a StateMsg.
	PlayerState struct {
		Seat   int     `json:"seat"`
		Name   string  `json:"name"`
		X      float64 `json:"x"`
		Y      float64 `json:"y"`
		Score  int     `json:"score"`
		Online bool    `json:"online"`
	}
	// NoticeMsg is a message from the admin API.
	NoticeMsg struct {
		Type string `json:"type"` // "notice"
		Text string `json:"text"`
	}
)

// InputMsg is the client's held direction: {"type":"input","dx":…,"dy":…}.
type InputMsg struct {
	DX int `json:"dx"`
	DY int `json:"dy"`
}

// Error codes of the game's error envelopes, besides the Router's own
// (bad_json, missing_type, unknown_type, bad_payload, bad_req, rate_limited).
const (
	CodeBadInput  = "bad_input"  // dx or dy not -1, 0 or 1
	CodeNoSeat    = "no_seat"    // input before the welcome, or after the seat was lost
	CodeMovedRoom = "room_moved" // the room is moving to another node; input dropped, resend
)

// Close codes: the upgrade succeeds and closes at once with these, so that
// a browser can read why (it cannot read an HTTP status).
const (
	// CloseBadRequest: a bad name, room or token format ("bad_name: …").
	CloseBadRequest wsactor.StatusCode = 4400
	// CloseNoSeat: the token's seat is gone (expired, or never existed), or
	// it is another room's: join anew.
	CloseNoSeat wsactor.StatusCode = 4404
	// CloseRoomFull: the room named by ?room= has no free seat.
	CloseRoomFull wsactor.StatusCode = 4409
	// CloseKicked: the room let the player go (another tab took its seat,
	// or the room closed), or a newer connection holds the seat this one
	// asked for ("seat_taken: …").
	CloseKicked wsactor.StatusCode = 4410
	// CloseUnavailable: the room could not be reached; retry.
	CloseUnavailable wsactor.StatusCode = 4503
)

// MaxNameLen bounds display names.
const MaxNameLen = 16

// CleanName trims a display name and checks it: 1–16 characters without
// control characters; "" becomes "player".
func CleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "player", nil
	}
	if utf8.RuneCountInString(name) > MaxNameLen {
		return "", errors.New("names are at most 16 characters")
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return "", errors.New("names cannot contain control characters")
	}
	return name, nil
}

// decodeInput reads and checks an input message.
func decodeInput(m wsactor.Message) (InputMsg, error) {
	var raw struct {
		DX json.Number `json:"dx"`
		DY json.Number `json:"dy"`
	}
	if err := json.Unmarshal(m.Data, &raw); err != nil {
		return InputMsg{}, wsactor.MessageError(CodeBadInput, "dx and dy must be -1, 0 or 1")
	}
	in := InputMsg{}
	for _, f := range []struct {
		n   json.Number
		out *int
	}{{raw.DX, &in.DX}, {raw.DY, &in.DY}} {
		switch f.n {
		case "-1":
			*f.out = -1
		case "0", "":
			*f.out = 0
		case "1":
			*f.out = 1
		default:
			return InputMsg{}, wsactor.MessageError(CodeBadInput, "dx and dy must be -1, 0 or 1")
		}
	}
	return in, nil
}
