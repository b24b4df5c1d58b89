package chatserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/wsactor/wsactor/auth"
)

func TestValidRoom(t *testing.T) {
	for room, ok := range map[string]bool{
		"lobby": true, "a": true, "0": true, "dev-ops_2": true, "private-dev": true, strings.Repeat("a", 64): true,
		"": false, "Lobby": false, "-x": false, "_x": false, "a b": false, "a/b": false, "é": false, strings.Repeat("a", 65): false,
	} {
		if err := ValidRoom(room); (err == nil) != ok {
			t.Errorf("ValidRoom(%q) = %v", room, err)
		}
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"": DefaultName, "   ": DefaultName, " Ann ": "Ann", "Zoë": "Zoë", strings.Repeat("é", 32): strings.Repeat("é", 32),
		strings.Repeat("n", 33): "!", "a\nb": "!", "a\x00b": "!", "tab\there": "!",
	} {
		got, err := CleanName(in)
		if want == "!" {
			if err == nil {
				t.Errorf("CleanName(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestCheckText(t *testing.T) {
	for text, ok := range map[string]bool{
		"hi": true, " hi ": true, "line\nline": true, strings.Repeat("é", MaxTextLen): true,
		"": false, " \n\t": false, strings.Repeat("x", MaxTextLen+1): false,
	} {
		if err := CheckText(text); (err == nil) != ok {
			t.Errorf("CheckText(%.20q…) = %v", text, err)
		}
	}
}

// request is an auth.Request for a room.
type request struct{ room string }

func (r request) PathValue(string) string { return r.room }
func (request) Query() url.Values         { return nil }
func (request) Header() http.Header       { return nil }

func TestPrivateRooms(t *testing.T) {
	granted := &auth.User{ID: "u", Claims: map[string]any{"rooms": []any{"private-dev"}}}
	plain := &auth.User{ID: "u"}
	for _, tc := range []struct {
		user  *auth.User
		room  string
		allow bool
	}{
		{nil, "lobby", true},
		{plain, "lobby", true},
		{nil, "private-dev", false},
		{plain, "private-dev", false},
		{granted, "private-dev", true},
		{granted, "private-ops", false},
	} {
		err := auth.Check(tc.user, request{tc.room}, privateRooms)
		if (err == nil) != tc.allow {
			t.Errorf("user %v, room %s: %v", tc.user, tc.room, err)
		}
	}
}
