package routing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Envelope is the routing head of a JSON message: its "type" and, for a
// request, its "req" correlation value. The rest of the object is the
// payload, decoded into the handler's type.
//
//	{"type": "chat.say", "req": 7, "text": "hi"}
type Envelope struct {
	Type string
	// Req is the raw JSON of "req" (a string of at most MaxReqLen bytes or
	// a safe integer), echoed verbatim in the reply; nil when the message
	// is not a request.
	Req json.RawMessage
}

// Error codes of the error envelope. They are part of the protocol:
// clients match on them.
const (
	CodeBadJSON     = "bad_json"     // the message is not a JSON object
	CodeMissingType = "missing_type" // no "type", or it is not a non-empty string
	CodeUnknownType = "unknown_type" // no handler for this type
	CodeBadPayload  = "bad_payload"  // the payload does not decode into the handler's type
	CodeBadReq      = "bad_req"      // "req" is not a string of at most MaxReqLen bytes nor a safe integer
	CodeUnsupported = "unsupported"  // a binary message on a route that takes none
	CodeInternal    = "internal"     // the handler failed; details are logged, not sent
)

// MaxTypeLen bounds "type" so an error envelope never echoes an unbounded string.
const MaxTypeLen = 128

// The bounds of a request ID ("req"), which every reply echoes verbatim. A
// string is bounded so that a client cannot make the server repeat an
// unbounded one. A number must be an integer literal (no fraction, no
// exponent) within ±MaxReqInt, the integers a JavaScript number holds
// exactly: 1e400 would read back as Infinity, and a 5,000-digit one as a
// different number, so the client could not match the reply to its request.
const (
	MaxReqLen = 64        // bytes of a string "req", once decoded
	MaxReqInt = 1<<53 - 1 // 9007199254740991, Number.MAX_SAFE_INTEGER
)

// DecodeEnvelope reads the routing head of a message. The error is an
// *Error with one of the Code constants.
func DecodeEnvelope(data []byte) (Envelope, error) {
	var head struct {
		Type *json.RawMessage `json:"type"`
		Req  json.RawMessage  `json:"req"`
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Envelope{}, &Error{Code: CodeBadJSON, Message: "message is not a JSON object"}
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return Envelope{}, &Error{Code: CodeBadJSON, Message: "malformed JSON: " + jsonErrorText(err)}
	}
	env := Envelope{}
	if head.Req != nil && !bytes.Equal(head.Req, []byte("null")) {
		if !validReq(head.Req) {
			// Not echoed: that is the point of the bound.
			return Envelope{}, &Error{Code: CodeBadReq, Message: badReqMessage}
		}
		env.Req = head.Req
	}
	if head.Type == nil {
		return env, &Error{Code: CodeMissingType, Message: `message has no "type"`}
	}
	if err := json.Unmarshal(*head.Type, &env.Type); err != nil || env.Type == "" {
		return env, &Error{Code: CodeMissingType, Message: `"type" must be a non-empty string`}
	}
	if len(env.Type) > MaxTypeLen {
		// Not echoed as "ref": a client must not make the server repeat an unbounded string.
		return Envelope{Req: env.Req}, &Error{Code: CodeMissingType, Message: fmt.Sprintf(`"type" is longer than %d bytes`, MaxTypeLen)}
	}
	return env, nil
}

var badReqMessage = fmt.Sprintf(`"req" must be a string of at most %d bytes or an integer between -%d and %d`, MaxReqLen, MaxReqInt, MaxReqInt)

// validReq reports whether raw, a JSON value the decoder has already checked,
// is a request ID within the bounds of MaxReqLen and MaxReqInt.
func validReq(raw json.RawMessage) bool {
	switch raw[0] {
	case '"':
		if len(raw)-2 <= MaxReqLen && utf8.Valid(raw) {
			// Escapes only shrink a string (only invalid UTF-8, which
			// decodes to U+FFFD, grows).
			return true
		}
		var s string
		return json.Unmarshal(raw, &s) == nil && len(s) <= MaxReqLen
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if bytes.ContainsAny(raw, ".eE") || len(raw) > len("-9007199254740991") {
			return false
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		return err == nil && -MaxReqInt <= n && n <= MaxReqInt
	}
	return false
}

// jsonErrorText keeps the decoder's explanation but not Go type names.
func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("%s (at byte %d)", syn.Error(), syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field != "" {
			return fmt.Sprintf("field %q has the wrong type (got %s)", typ.Field, typ.Value)
		}
		return fmt.Sprintf("wrong JSON type (got %s)", typ.Value)
	}
	return err.Error()
}

// Error is a failure reported to the client as an error envelope:
//
//	{"type":"error","code":"unknown_type","message":"no handler for \"x\"","error":"no handler for \"x\"","ref":"x","req":7}
//
// A handler returns one (see Errorf) to send the client a chosen code and
// message; any other error is reported as CodeInternal, and logged.
type Error struct {
	Code    string
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with an application-chosen code, sent to the
// client as is.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// errorEnvelope is the JSON of an error sent to the client. The text is
// under both "message" (what Starlette, Socket.IO and the game protocol call
// it) and "error" (its name before; kept so that existing clients go on
// working).
type errorEnvelope struct {
	Type    string          `json:"type"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Error   string          `json:"error"`
	Ref     string          `json:"ref,omitempty"`
	Req     json.RawMessage `json:"req,omitempty"`
}

// replyEnvelope is the JSON of a request's answer.
type replyEnvelope struct {
	Type string          `json:"type"`
	Req  json.RawMessage `json:"req,omitempty"`
	Data any             `json:"data"`
}
