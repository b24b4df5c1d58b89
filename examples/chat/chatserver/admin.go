package chatserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
)

// The admin API reaches connections from outside, by ID, over plain HTTP:
// what a backend does when an event that is not a WebSocket message (a
// payment, a moderation decision) must reach a client.
//
//	POST /api/send                   {"to":"<id>","text":"..."}       → {"type":"notice","text":"..."} to that client
//	POST /api/rooms/{room}/broadcast {"text":"..."}                   → a notice to every member
//	GET  /api/rooms/{room}/members                                    → [{"id":..,"name":..}, ...]
//	POST /api/close                  {"id":"<id>","code":4000,"reason":"..."}
const (
	maxAdminBody = 64 << 10
	adminTimeout = 10 * time.Second
)

func (a *app) adminRoutes(mux *http.ServeMux, token string) {
	api := http.NewServeMux()
	api.HandleFunc("POST /api/send", a.apiSend)
	api.HandleFunc("POST /api/rooms/{room}/broadcast", a.apiBroadcast)
	api.HandleFunc("GET /api/rooms/{room}/members", a.apiMembers)
	api.HandleFunc("POST /api/close", a.apiClose)
	// Every path under /api/ is guarded, so that without the token nothing
	// about the API shows (not even a 404 or a 405).
	mux.Handle("/api/", auth.RequireBearer(token, "chat admin", api))
}

type sendRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

func (a *app) apiSend(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	if !decodeBody(w, r, &req) {
		return
	}
	id, err := wsactor.ParseID(req.To)
	if err != nil {
		writeError(w, http.StatusBadRequest, `"to" is not a connection ID`)
		return
	}
	if err := CheckText(req.Text); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	msg, err := wsactor.JSON(noticeMsg{Type: "notice", Text: req.Text})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	// Send waits until the message is queued for the socket: a 200 means the
	// connection took it, not only that it existed.
	switch err := a.srv.Send(ctx, id, msg); {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]int{"queued": 1})
	case errors.Is(err, wsactor.ErrConnectionNotFound):
		writeError(w, http.StatusNotFound, "no such connection")
	case errors.Is(err, wsactor.ErrSendQueueFull):
		writeError(w, http.StatusServiceUnavailable, "the connection's send queue is full")
	default:
		writeError(w, http.StatusGatewayTimeout, err.Error())
	}
}

type broadcastRequest struct {
	Text string `json:"text"`
}

func (a *app) apiBroadcast(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if err := ValidRoom(room); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var req broadcastRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := CheckText(req.Text); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	n, err := a.srv.Groups().BroadcastJSON(r.Context(), room, noticeMsg{Type: "notice", Text: req.Text})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"queued": n})
}

func (a *app) apiMembers(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if err := ValidRoom(room); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	members, err := a.members(r.Context(), room)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, members)
}

type closeRequest struct {
	ID     string `json:"id"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// maxReasonLen is what a close frame carries.
const maxReasonLen = 123

func (a *app) apiClose(w http.ResponseWriter, r *http.Request) {
	var req closeRequest
	if !decodeBody(w, r, &req) {
		return
	}
	id, err := wsactor.ParseID(req.ID)
	if err != nil {
		writeError(w, http.StatusBadRequest, `"id" is not a connection ID`)
		return
	}
	code := wsactor.StatusCode(req.Code)
	switch {
	case req.Code == 0:
		code = CloseKicked
	case req.Code != int(wsactor.StatusNormalClosure) && (req.Code < 4000 || req.Code > 4999):
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"code" must be 1000 or 4000-4999, got %d`, req.Code))
		return
	}
	if len(req.Reason) > maxReasonLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"reason" is at most %d bytes, got %d`, maxReasonLen, len(req.Reason)))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	// Close waits until the connection has closed (its OnClose has run).
	switch err := a.srv.Close(ctx, id, code, req.Reason); {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"closed": string(id)})
	case errors.Is(err, wsactor.ErrConnectionNotFound):
		writeError(w, http.StatusNotFound, "no such connection")
	case errors.Is(err, context.DeadlineExceeded):
		// Asked, but the client has not finished the closing handshake.
		writeJSON(w, http.StatusAccepted, map[string]string{"closing": string(id)})
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// decodeBody decodes a JSON object of at most maxAdminBody bytes into v,
// refusing unknown fields and trailing data, and answers 400 or 413 itself.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data after the JSON object")
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxAdminBody))
	default:
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
