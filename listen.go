package wsactor

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/wsactor/wsactor/internal/metrics"
)

// The servers that ListenAndServe, Serve and ListenAndServeHandler run count
// every TCP connection against MaxConnections, from Accept until net/http is
// done with it: closed, or hijacked for a WebSocket, whose own slot the
// upgrade takes (Server.upgrade) just before. The count is Server.admitted,
// shared with upgrades served through ServeHTTP from other http.Servers;
// ConnContext marks the requests of our own connections so that an upgrade
// on one is not counted twice.

// Refusals at the cap: how many may be answered at once (beyond, a
// connection is closed without an answer) and how long each may take.
const (
	maxRefusing      = 32
	refusalTimeout   = time.Second
	refusalReadLimit = 64 << 10 // bytes read from a refused connection
)

const refusalResponse = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Length: 21\r\n" +
	"Connection: close\r\n" +
	"\r\n" +
	"too many connections\n"

// heldConnKey marks, in a request's context, a connection that a listener
// of this server counts; its value is the *Server.
type heldConnKey struct{}

// httpServer is the http.Server that ServeHandler runs h on.
func (s *Server) httpServer(h http.Handler) *http.Server {
	o := s.opts.HTTP
	if o.MaxBodyBytes > 0 {
		h = http.MaxBytesHandler(h, o.MaxBodyBytes)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.opts.HandshakeTimeout,
		ReadTimeout:       o.ReadTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, heldConnKey{}, s)
		},
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateClosed || state == http.StateHijacked {
				s.release()
			}
		},
	}
}

// heldByListener reports whether r came on a connection that a listener of
// s already counts.
func (s *Server) heldByListener(r *http.Request) bool {
	held, _ := r.Context().Value(heldConnKey{}).(*Server)
	return held == s
}

// limitListener counts the connections it accepts against MaxConnections
// and answers those beyond it with 503.
type limitListener struct {
	net.Listener
	s        *Server
	refusing chan struct{} // a token per refusal being answered
}

func (s *Server) limitListener(l net.Listener) *limitListener {
	return &limitListener{Listener: l, s: s, refusing: make(chan struct{}, maxRefusing)}
}

// Accept returns the next connection within the cap; the server's
// ConnState releases its slot when net/http is done with it.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.admit() {
			return c, nil
		}
		l.s.counters.Reject(metrics.RejectLimit)
		l.s.warnAtCap()
		select {
		case l.refusing <- struct{}{}:
			go func() {
				defer func() { <-l.refusing }()
				refuse(c)
			}()
		default:
			// A flood: answering every one would hold as many descriptors.
			_ = c.Close()
		}
	}
}

// refuse answers c's first request with 503 and closes it. It reads the
// request's head first: a client that gets an answer before it has sent
// its request may take it for a broken connection (Go's http.Transport
// does), and the answer would not be clear.
func refuse(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refusalTimeout))
	br := bufio.NewReaderSize(io.LimitReader(c, refusalReadLimit), 1024)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return // gone, silent or too long: no answer is owed
		}
		if err == nil && (string(line) == "\r\n" || string(line) == "\n") {
			break // the end of the head
		}
	}
	if _, err := io.WriteString(c, refusalResponse); err != nil {
		return
	}
	// Closing with a request body unread would reset the connection, and
	// the client could lose the answer: end our side, and read until the
	// client closes its own (or the deadline).
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, br)
}

// warnAtCap logs, at most once a minute, that connections are refused.
func (s *Server) warnAtCap() {
	now := time.Now().UnixNano()
	last := s.capWarned.Load()
	if now-last < int64(time.Minute) || !s.capWarned.CompareAndSwap(last, now) {
		return
	}
	s.logger.Warn("wsactor: MaxConnections reached; refusing new connections with 503",
		slog.Int("max_connections", s.opts.MaxConnections))
}
