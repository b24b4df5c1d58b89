//go:build !unix

package transport

import (
	"errors"
	"net"
	"syscall"
)

// socketReader reads a socket with a pooled buffer held while waiting; on
// Unix it waits without one (socket_unix.go).
type socketReader struct{ conn net.Conn }

func newSocketReader(conn net.Conn, _ syscall.RawConn) socketReader { return socketReader{conn: conn} }

// rawConnOf returns nil: without a poller wait, the writer goroutine does
// every write (write.go).
func rawConnOf(net.Conn) syscall.RawConn { return nil }

// tryWrite is never called where rawConnOf returns nil.
func tryWrite(syscall.RawConn, net.Conn, []byte) (int, error) { return 0, errNoPoll }

// parks reports whether waiting for bytes needs no buffer.
func (s *socketReader) parks() bool { return false }

func (s *socketReader) read(p []byte) (int, error) { return s.conn.Read(p) }

// readPooled waits for bytes and reads them into a pooled buffer, which it
// returns when n > 0 (the caller owns it then).
func (s *socketReader) readPooled() (*[ioBufSize]byte, int, error) {
	b := getIOBuf()
	n, err := s.conn.Read(b[:])
	if n == 0 {
		putIOBuf(b)
		return nil, 0, err
	}
	return b, n, err
}

var errNoPoll = errors.New("wsactor/transport: no poller wait on this platform")

// poll is never called where parks is false.
func (s *socketReader) poll(func(fd uintptr) bool) error { return errNoPoll }

func (s *socketReader) tryReadPooled(uintptr) (*[ioBufSize]byte, int, error, bool) {
	return nil, 0, errNoPoll, false
}
