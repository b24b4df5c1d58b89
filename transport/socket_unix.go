//go:build unix

package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// socketReader reads a socket. On a plain TCP (or Unix) socket it waits for
// bytes through the runtime's poller with no buffer (syscall.RawConn), and
// takes a pooled buffer only once there is something to read, so an idle
// connection holds none. Any other net.Conn (TLS, a wrapper) is read with a
// pooled buffer held while waiting.
type socketReader struct {
	conn net.Conn
	raw  syscall.RawConn // nil: read conn
}

// newSocketReader reads conn, through raw when it is not nil (rawConnOf).
func newSocketReader(conn net.Conn, raw syscall.RawConn) socketReader {
	return socketReader{conn: conn, raw: raw}
}

// rawConnOf returns conn's file descriptor access when conn is a plain
// socket (TCP, Unix), or nil: a TLS connection or any other wrapper has
// bytes of its own between the caller and the socket.
func rawConnOf(conn net.Conn) syscall.RawConn {
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// tryWrite writes as much of p as the socket takes without waiting: n < len(p)
// with a nil error means the socket's buffer is full. err is answered as
// net.Conn.Write would.
func tryWrite(raw syscall.RawConn, conn net.Conn, p []byte) (n int, err error) {
	w := tryWriters.Get().(*tryWriter)
	w.conn, w.p, w.n, w.err = conn, p, 0, nil
	perr := raw.Write(w.call)
	n, err = w.n, w.err
	*w = tryWriter{call: w.call}
	tryWriters.Put(w)
	if perr != nil {
		return n, perr // the poller's: the socket is closed
	}
	return n, err
}

// tryWriter is one write's state for the poller's callback. They are pooled
// with their callback bound (call): a closure made per write would cost
// allocations on every message, and one kept per connection its memory.
type tryWriter struct {
	call func(fd uintptr) bool // w.write
	conn net.Conn
	p    []byte
	n    int
	err  error
}

var tryWriters = sync.Pool{New: func() any {
	w := new(tryWriter)
	w.call = w.write
	return w
}}

func (w *tryWriter) write(fd uintptr) bool {
	for w.n < len(w.p) {
		m, err := syscall.Write(int(fd), w.p[w.n:])
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return true
		case err != nil:
			w.err = &net.OpError{Op: "write", Net: w.conn.LocalAddr().Network(), Source: w.conn.LocalAddr(),
				Addr: w.conn.RemoteAddr(), Err: os.NewSyscallError("write", err)}
			return true
		}
		w.n += m
	}
	return true // done either way: this write never waits for the poller
}

// parks reports whether waiting for bytes needs no buffer.
func (s *socketReader) parks() bool { return s.raw != nil }

// read reads into p, waiting for bytes.
func (s *socketReader) read(p []byte) (n int, err error) {
	if s.raw == nil {
		return s.conn.Read(p)
	}
	perr := s.raw.Read(func(fd uintptr) bool {
		var again bool
		n, err, again = s.tryRead(fd, p)
		return !again
	})
	if perr != nil {
		return 0, perr // the poller's: closed, or a deadline; already a *net.OpError
	}
	return n, err
}

// readPooled waits for bytes and reads them into a pooled buffer, which it
// returns when n > 0 (the caller owns it then).
func (s *socketReader) readPooled() (b *[ioBufSize]byte, n int, err error) {
	if s.raw == nil {
		b = getIOBuf()
		n, err = s.conn.Read(b[:])
	} else {
		perr := s.raw.Read(func(fd uintptr) bool {
			var again bool
			b, n, err, again = s.tryReadPooled(fd)
			return !again
		})
		if perr != nil {
			err = perr
		}
	}
	if n == 0 && b != nil {
		putIOBuf(b)
		b = nil
	}
	return b, n, err
}

// poll runs f when the socket may be readable, until f reports done.
func (s *socketReader) poll(f func(fd uintptr) (done bool)) error { return s.raw.Read(f) }

// tryReadPooled reads what is there into a pooled buffer; again reports
// that nothing was, and then no buffer is held.
func (s *socketReader) tryReadPooled(fd uintptr) (b *[ioBufSize]byte, n int, err error, again bool) {
	b = getIOBuf()
	n, err, again = s.tryRead(fd, b[:])
	if n == 0 {
		putIOBuf(b)
		b = nil
	}
	return b, n, err, again
}

// tryRead is one read(2), answered as net.Conn.Read would; again reports
// that nothing was there to read.
func (s *socketReader) tryRead(fd uintptr, p []byte) (n int, err error, again bool) {
	for {
		n, err = syscall.Read(int(fd), p)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return 0, nil, true
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: s.conn.LocalAddr().Network(), Source: s.conn.LocalAddr(),
			Addr: s.conn.RemoteAddr(), Err: os.NewSyscallError("read", err)}, false
	case n == 0:
		return 0, io.EOF, false
	}
	return n, nil, false
}
