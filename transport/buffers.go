package transport

import (
	"bufio"
	"sync"
)

// Memory per idle connection. net/http hands a hijacked connection over with
// a 4 KiB bufio.Reader and a 4 KiB bufio.Writer, and coder/websocket keeps
// both for the connection's life: 8 KiB of an idle connection's ~14 KiB of
// heap held for bytes that are not there. wsactor hands coder/websocket tiny
// ones instead (hijackRecorder.Hijack) and does the buffering underneath,
// from a shared pool, only while bytes are in flight:
//
//   - inboundConn reads the socket into a pooled buffer and gives it back as
//     soon as coder/websocket has taken every byte. An idle connection waits
//     for the socket to become readable without any buffer (socketReader).
//   - watchedConn gathers the pieces of each message (frame header,
//     payload) in a pooled buffer and sends them in one write, as the 4 KiB
//     bufio.Writer did, then gives the buffer back; it keeps it only for a
//     remainder the socket did not take, until the writer goroutine sends it.

// ioBufSize is the size of a pooled buffer: net/http's bufio size, so a
// message costs the same number of system calls as before.
const ioBufSize = 4 << 10

// Sizes of the bufio buffers coder/websocket keeps for the connection's life.
const (
	// readBufSize is bufio's minimum. coder/websocket reads frame headers
	// through it; a larger read goes past it, into the pooled buffer.
	readBufSize = 16
	// writeBufSize holds any control frame (2-byte header, at most 125
	// bytes of payload), so that a pong, ping or close frame written
	// outside the writer goroutine still leaves in one write.
	writeBufSize = 128
)

var ioBufs = sync.Pool{New: func() any { return new([ioBufSize]byte) }}

func getIOBuf() *[ioBufSize]byte  { return ioBufs.Get().(*[ioBufSize]byte) }
func putIOBuf(b *[ioBufSize]byte) { ioBufs.Put(b) }

// smallReadWriter is the bufio pair coder/websocket gets instead of
// net/http's: rd and wr are the checked and the watched socket.
func smallReadWriter(rd *inboundConn, wr *watchedConn) *bufio.ReadWriter {
	return bufio.NewReadWriter(bufio.NewReaderSize(rd, readBufSize), bufio.NewWriterSize(wr, writeBufSize))
}
