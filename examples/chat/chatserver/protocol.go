package chatserver

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
)

// Limits on what clients send.
const (
	MaxNameLen  = 32   // display names: 1–32 characters
	MaxTextLen  = 2000 // say, dm and notices: 1–2000 characters
	DefaultName = "anon"
)

// Error codes of the error envelopes the chat adds to the Router's own
// (bad_json, missing_type, unknown_type, bad_payload, bad_req, unsupported,
// internal).
const (
	CodeBadText       = "bad_text"       // text empty, blank or longer than MaxTextLen
	CodeBadTarget     = "bad_target"     // dm "to" is not a connection ID
	CodeUnknownTarget = "unknown_target" // dm "to" is not a connection in this room
)

// Close codes the chat sends.
const (
	// CloseBadRequest refuses a handshake with a bad room or name, after the
	// upgrade so that browsers can read why: the reason is "bad_room: …" or
	// "bad_name: …".
	CloseBadRequest wsactor.StatusCode = 4400
	// CloseKicked is the admin API's default close code.
	CloseKicked wsactor.StatusCode = 4000
)

// roomPattern is the room syntax: what fits a URL path segment and a log
// line without escaping.
var roomPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// privatePrefix marks rooms that need a token granting them.
const privatePrefix = "private-"

// ValidRoom reports why a room name is unusable, or nil.
func ValidRoom(room string) error {
	if !roomPattern.MatchString(room) {
		return errors.New("room names are 1-64 characters: a-z, 0-9, '-' and '_', starting with a letter or digit")
	}
	return nil
}

// CleanName trims a display name and checks it: "" becomes DefaultName;
// otherwise 1–MaxNameLen characters without control characters.
func CleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return DefaultName, nil
	}
	if n := utf8.RuneCountInString(name); n > MaxNameLen {
		return "", fmt.Errorf("names are at most %d characters, got %d", MaxNameLen, n)
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return "", errors.New("names cannot contain control characters")
	}
	return name, nil
}

// CheckText checks a message text: 1–MaxTextLen characters, not all blank.
func CheckText(text string) error {
	if strings.TrimSpace(text) == "" {
		return errors.New(`"text" is empty`)
	}
	if n := utf8.RuneCountInString(text); n > MaxTextLen {
		return fmt.Errorf(`"text" is at most %d characters, got %d`, MaxTextLen, n)
	}
	return nil
}

// privateRooms is the route's permission: rooms named "private-*" need the
// room in the token's "rooms" claim (anonymous users never get in); other
// rooms are open to whoever passed authentication.
func privateRooms(u *auth.User, r auth.Request) error {
	if !strings.HasPrefix(r.PathValue("room"), privatePrefix) {
		return nil
	}
	return auth.RequireClaim("rooms", auth.PathValue("room"))(u, r)
}

// Client → server messages. The Router decodes the whole envelope into them.
type (
	sayMsg struct {
		Text string `json:"text"`
	}
	dmMsg struct {
		To   string `json:"to"`
		Text string `json:"text"`
	}
	whoMsg struct{}
)

// Server → client messages.
type (
	welcomeMsg struct {
		Type string     `json:"type"` // "welcome"
		ID   wsactor.ID `json:"id"`
		Room string     `json:"room"`
		Name string     `json:"name"`
		User string     `json:"user,omitempty"`
	}
	saidMsg struct {
		Type string     `json:"type"` // "said"
		ID   wsactor.ID `json:"id"`
		Name string     `json:"name"`
		User string     `json:"user,omitempty"`
		Text string     `json:"text"`
	}
	dmOutMsg struct {
		Type string     `json:"type"` // "dm"
		From wsactor.ID `json:"from"`
		Name string     `json:"name"`
		User string     `json:"user,omitempty"`
		Text string     `json:"text"`
	}
	membersMsg struct {
		Type    string       `json:"type"` // "members"
		Room    string       `json:"room"`
		Count   int          `json:"count"`
		Members []memberInfo `json:"members"`
	}
	// largeRoomMsg answers who in a room too large to list.
	largeRoomMsg struct {
		Type  string `json:"type"` // "members"
		Room  string `json:"room"`
		Count int    `json:"count"`
	}
	noticeMsg struct {
		Type string `json:"type"` // "notice"
		Text string `json:"text"`
	}
	// memberInfo is a room member as clients and the admin API see it.
	memberInfo struct {
		ID   wsactor.ID `json:"id"`
		Name string     `json:"name"`
		User string     `json:"user,omitempty"`
	}
)

// nameKey holds the connection's display name, chosen at the handshake.
type nameKey struct{}

// app is what the message handlers share: the server, for its groups and
// for sending to other connections by ID.
type app struct {
	srv       *wsactor.Server
	largeRoom int // Config.LargeRoom
}

// router registers the chat's messages. One Router serves every connection:
// it holds no per-connection state.
func (a *app) router() *wsactor.Router {
	r := &wsactor.Router{}
	wsactor.On(r, "say", a.say)
	wsactor.On(r, "dm", a.dm)
	wsactor.On(r, "who", a.who)
	return r
}

// conn is one chat connection: the shared Router for its messages, plus the
// handshake and OnOpen.
type conn struct {
	*wsactor.Router
}

// Connect checks the room and picks the display name: the token's "name"
// claim if there is one, else ?name=, else DefaultName. Authentication and
// the private-room permission ran before it (401 and 403).
func (*conn) Connect(hs *wsactor.Handshake) wsactor.Decision {
	if err := ValidRoom(hs.PathValue("room")); err != nil {
		return wsactor.AcceptThenClose(CloseBadRequest, "bad_room: "+err.Error())
	}
	name := hs.Query().Get("name")
	if hs.User != nil {
		if n, ok := hs.User.Claims["name"].(string); ok && n != "" {
			name = n
		}
	}
	name, err := CleanName(name)
	if err != nil {
		return wsactor.AcceptThenClose(CloseBadRequest, "bad_name: "+err.Error())
	}
	hs.SetValue(nameKey{}, name) // survives handler restarts
	return wsactor.Accept()
}

// OnOpen joins the connection to its room, then welcomes it. The runtime
// tells the members (a "presence" event with the join) and takes the
// connection out of the room when it closes (one with the leave).
//
// Joining first means that a client holding its welcome is a member. The
// welcome is still the first message the client gets: broadcasts to the
// room reach this connection through its mailbox, after OnOpen.
func (*conn) OnOpen(c *wsactor.Conn) error {
	room, name := c.PathValue("room"), nameOf(c)
	if err := c.Join(room, map[string]string{"name": name}); err != nil {
		if errors.Is(err, wsactor.ErrConnectionNotFound) {
			return nil // already closing
		}
		return err // 1011: the directory failed
	}
	_ = c.SendJSON(welcomeMsg{Type: "welcome", ID: c.ID(), Room: room, Name: name, User: userOf(c)}) // fails only when closing
	return nil
}

func (a *app) say(c *wsactor.Conn, m sayMsg) error {
	if err := CheckText(m.Text); err != nil {
		return wsactor.MessageError(CodeBadText, "%v", err)
	}
	msg, err := wsactor.JSON(saidMsg{Type: "said", ID: c.ID(), Name: nameOf(c), User: userOf(c), Text: m.Text})
	if err != nil {
		return err
	}
	// Serialized once, posted to every member's mailbox, the sender's too.
	return c.Broadcast(c.PathValue("room"), msg)
}

func (a *app) dm(c *wsactor.Conn, m dmMsg) error {
	if err := CheckText(m.Text); err != nil {
		return wsactor.MessageError(CodeBadText, "%v", err)
	}
	to, err := wsactor.ParseID(m.To)
	if err != nil {
		return wsactor.MessageError(CodeBadTarget, `"to" is not a connection ID`)
	}
	// Only members of the sender's room: a DM must not reach into a
	// private room the sender is not in.
	room := c.PathValue("room")
	groups, err := a.srv.Groups().GroupsOf(c.Context(), to)
	if err != nil {
		return err
	}
	if !slices.Contains(groups, room) {
		return wsactor.MessageError(CodeUnknownTarget, "no connection %s in room %s", to, room)
	}
	msg, err := wsactor.JSON(dmOutMsg{Type: "dm", From: c.ID(), Name: nameOf(c), User: userOf(c), Text: m.Text})
	if err != nil {
		return err
	}
	// Post, not Send: Send waits on the target's mailbox, and two members
	// messaging each other at once would each wait for the other.
	if err := a.srv.Post(to, msg); err != nil {
		return wsactor.MessageError(CodeUnknownTarget, "no connection %s in room %s", to, room)
	}
	return nil
}

func (a *app) who(c *wsactor.Conn, _ whoMsg) error {
	room := c.PathValue("room")
	n, err := a.srv.Groups().Count(c.Context(), room)
	if err != nil {
		return err
	}
	// In a large room, the count only, as the presence events: every member
	// of a room of N asking for the list on joining would cost O(N²).
	if n > a.largeRoom {
		return c.SendJSON(largeRoomMsg{Type: "members", Room: room, Count: n})
	}
	members, err := a.members(c.Context(), room)
	if err != nil {
		return err
	}
	return c.SendJSON(membersMsg{Type: "members", Room: room, Count: len(members), Members: members})
}

// members lists a room as clients see it: never nil, so it encodes as [].
func (a *app) members(ctx context.Context, room string) ([]memberInfo, error) {
	ms, err := a.srv.Groups().Members(ctx, room)
	if err != nil {
		return nil, err
	}
	out := make([]memberInfo, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberInfo{ID: m.ID, Name: m.Meta["name"], User: m.User})
	}
	return out, nil
}

func nameOf(c *wsactor.Conn) string {
	name, _ := c.Value(nameKey{}).(string)
	return name
}

func userOf(c *wsactor.Conn) string {
	if u := c.User(); u != nil {
		return u.ID
	}
	return ""
}
