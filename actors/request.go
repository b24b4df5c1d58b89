package actors

import (
	"encoding/binary"
	"net/http"
	"net/url"
)

// packedRequest is what a connection keeps of its upgrade request for URL,
// Query, Header and Cookie: the URL and the header fields in one string of
// length-prefixed pieces. net/http's parsed form (the header map with its
// value slices, the url.URL) costs about 0.8 KiB for a minimal handshake
// and several for a browser's, held for the connection's life by every
// connection, most of which never look at it again after OnOpen.
type packedRequest string

func packRequest(r *http.Request) packedRequest {
	u := r.URL.String()
	n := binary.MaxVarintLen64 + len(u)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += 2*binary.MaxVarintLen64 + len(k) + len(v)
		}
	}
	b := make([]byte, 0, n)
	b = appendPiece(b, u)
	for k, vs := range r.Header {
		for _, v := range vs {
			b = appendPiece(appendPiece(b, k), v)
		}
	}
	return packedRequest(b)
}

func appendPiece(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// next splits off the first piece.
func (p packedRequest) next() (string, packedRequest) {
	n, k := binary.Uvarint([]byte(p[:min(len(p), binary.MaxVarintLen64)]))
	return string(p[k : k+int(n)]), p[k+int(n):]
}

// url returns a fresh copy of the request's URL.
func (p packedRequest) url() *url.URL {
	if p == "" {
		return &url.URL{}
	}
	s, _ := p.next()
	u, err := url.Parse(s)
	if err != nil { // cannot happen: s is the String of a parsed URL
		return &url.URL{}
	}
	return u
}

// header returns a fresh copy of the request's header.
func (p packedRequest) header() http.Header {
	if p == "" {
		return http.Header{}
	}
	_, rest := p.next()
	h := make(http.Header)
	for rest != "" {
		var k, v string
		k, rest = rest.next()
		v, rest = rest.next()
		h[k] = append(h[k], v)
	}
	return h
}
