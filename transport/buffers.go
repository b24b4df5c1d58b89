package transport

import (
	"bufio"
	"sync"
	"unsafe"
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
// message. CopyBuffer draws the copy from a pool by size class, and
// EnqueueRecycled gives it back once the message is written or dropped.
// A class is twice the size of the one below it, so a queued message holds
// at most twice its bytes. The pools have no New: the garbage collector
// empties them at each cycle, and a copy made when one is empty is an
// allocation that need not be zeroed first, as before there were pools.
var (
	msgBufs64   sync.Pool
	msgBufs128  sync.Pool
	msgBufs256  sync.Pool
	msgBufs512  sync.Pool
	msgBufs1024 sync.Pool
	msgBufs2048 sync.Pool
	msgBufs4096 sync.Pool
)

// CopyBuffer returns a copy of src for a message that will be queued with
// EnqueueRecycled, which takes it over: in a recycled buffer when one of
// its size class is free, or else in a new one (which EnqueueRecycled
// recycles if its size is a class's). A message of more than 4 KiB is not
// pooled.
func CopyBuffer(src []byte) []byte {
	n := len(src)
	var b []byte
	switch {
	case n <= 64:
		b = fromPool[[64]byte](&msgBufs64, n)
	case n <= 128:
		b = fromPool[[128]byte](&msgBufs128, n)
	case n <= 256:
		b = fromPool[[256]byte](&msgBufs256, n)
	case n <= 512:
		b = fromPool[[512]byte](&msgBufs512, n)
	case n <= 1024:
		b = fromPool[[1024]byte](&msgBufs1024, n)
	case n <= 2048:
		b = fromPool[[2048]byte](&msgBufs2048, n)
	case n <= 4096:
		b = fromPool[[4096]byte](&msgBufs4096, n)
	}
	if b == nil {
		// make and copy, which the compiler turns into one allocation
		// that is not zeroed first.
		b = make([]byte, n)
		copy(b, src)
		return b
	}
	copy(b, src)
	return b
}

// fromPool returns n bytes of an array of type A from pool, or nil if the
// pool has none.
func fromPool[A any](pool *sync.Pool, n int) []byte {
	a, _ := pool.Get().(*A)
	if a == nil {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(a)), unsafe.Sizeof(*a))[:n]
}

// putBuffer gives a buffer from CopyBuffer back; tests count the calls.
var putBuffer = recycle

// recycle gives a buffer from CopyBuffer back to its pool; one of another
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
