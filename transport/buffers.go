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

// Recycled message buffers. A message that another node sent arrives in a
// buffer the receiver reuses, so it is copied for the send queue; at
// hundreds of thousands of messages a second, allocating that copy and
// collecting it cost more than the rest of the receiving node's work per
// message. GetBuffer draws the copy from a pool by size class, and
// EnqueueRecycled gives it back once the message is written or dropped.
// A class is twice the size of the one below it, so a queued message holds
// at most twice its bytes.
var (
	msgBufs64   = sync.Pool{New: func() any { return new([64]byte) }}
	msgBufs128  = sync.Pool{New: func() any { return new([128]byte) }}
	msgBufs256  = sync.Pool{New: func() any { return new([256]byte) }}
	msgBufs512  = sync.Pool{New: func() any { return new([512]byte) }}
	msgBufs1024 = sync.Pool{New: func() any { return new([1024]byte) }}
	msgBufs2048 = sync.Pool{New: func() any { return new([2048]byte) }}
	msgBufs4096 = sync.Pool{New: func() any { return new([4096]byte) }}
)

// GetBuffer returns a buffer of n bytes for a message that will be queued
// with EnqueueRecycled, which takes it over. Its bytes are not zeroed: the
// caller fills all of them. A buffer of more than 4 KiB is not pooled.
func GetBuffer(n int) []byte {
	switch {
	case n <= 64:
		return msgBufs64.Get().(*[64]byte)[:n]
	case n <= 128:
		return msgBufs128.Get().(*[128]byte)[:n]
	case n <= 256:
		return msgBufs256.Get().(*[256]byte)[:n]
	case n <= 512:
		return msgBufs512.Get().(*[512]byte)[:n]
	case n <= 1024:
		return msgBufs1024.Get().(*[1024]byte)[:n]
	case n <= 2048:
		return msgBufs2048.Get().(*[2048]byte)[:n]
	case n <= 4096:
		return msgBufs4096.Get().(*[4096]byte)[:n]
	}
	return make([]byte, n)
}

// putBuffer gives a buffer from GetBuffer back; tests count the calls.
var putBuffer = recycle

// recycle gives a buffer from GetBuffer back to its pool; one of another
// capacity (a large message's) is left to the garbage collector.
func recycle(b []byte) {
	switch cap(b) {
	case 64:
		msgBufs64.Put((*[64]byte)(b[:64]))
	case 128:
		msgBufs128.Put((*[128]byte)(b[:128]))
	case 256:
		msgBufs256.Put((*[256]byte)(b[:256]))
	case 512:
		msgBufs512.Put((*[512]byte)(b[:512]))
	case 1024:
		msgBufs1024.Put((*[1024]byte)(b[:1024]))
	case 2048:
		msgBufs2048.Put((*[2048]byte)(b[:2048]))
	case 4096:
		msgBufs4096.Put((*[4096]byte)(b[:4096]))
	}
}
