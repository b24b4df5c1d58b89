package benchmarks

import (
	"encoding/binary"
	"math"
	"os"
	"strconv"
	"testing"
	"time"
)

// What the room benchmarks have in common: the game a room runs (8 players'
// dots moving on a field), the same in a room handler and in every
// baseline, and reading their sizes from the environment.

const (
	// gamePlayers is the number of seats of a benchmark room.
	gamePlayers = 8
	// gameStateSize is the size of an encoded state: the tick number, then
	// each player's position as two float32.
	gameStateSize = 4 + gamePlayers*2*4
	// gameField is the side of the square field the dots bounce in.
	gameField = 1000
)

// gameState is a room's game: 8 dots moving and bouncing off the walls.
// Stepping and encoding it is the "little work" of a tick: a few hundred
// nanoseconds, no allocation when the buffer is reused.
type gameState struct {
	tick     uint32
	pos, vel [gamePlayers][2]float32
}

// newGameState places the dots from seed, so that rooms differ.
func newGameState(seed int) gameState {
	var g gameState
	for i := range gamePlayers {
		f := float32((seed*31 + i*17) % gameField)
		g.pos[i] = [2]float32{f, gameField - f}
		g.vel[i] = [2]float32{float32(40 + i*7), float32(60 - i*9)}
	}
	return g
}

// step moves every dot by dt seconds.
func (g *gameState) step(dt float32) {
	g.tick++
	for i := range g.pos {
		for d := range 2 {
			p := g.pos[i][d] + g.vel[i][d]*dt
			if p < 0 || p > gameField {
				g.vel[i][d] = -g.vel[i][d]
				p = min(max(p, 0), gameField)
			}
			g.pos[i][d] = p
		}
	}
}

// encode appends the state to b (gameStateSize bytes).
func (g *gameState) encode(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, g.tick)
	for _, p := range g.pos {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(p[0]))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(p[1]))
	}
	return b
}

// decodeTick returns the tick number of an encoded state.
func decodeTick(b []byte) (uint32, bool) {
	if len(b) != gameStateSize {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b), true
}

// envInt reads a positive integer from the environment variable name, or
// returns def when it is unset.
func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// envSeconds reads a whole number of seconds like envInt.
func envSeconds(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	return time.Duration(envInt(tb, name, int(def/time.Second))) * time.Second
}

func TestGameState(t *testing.T) {
	g := newGameState(3)
	for range 1000 {
		g.step(0.05)
	}
	for i, p := range g.pos {
		if p[0] < 0 || p[0] > gameField || p[1] < 0 || p[1] > gameField {
			t.Fatalf("dot %d left the field: %v", i, p)
		}
	}
	b := g.encode(nil)
	if n, ok := decodeTick(b); !ok || n != 1000 || len(b) != gameStateSize {
		t.Fatalf("encoded %d bytes, tick %d (%v)", len(b), n, ok)
	}
	if allocs := testing.AllocsPerRun(100, func() { g.step(0.05); b = g.encode(b[:0]) }); allocs != 0 {
		t.Fatalf("a step and an encode into a reused buffer allocate %v times", allocs)
	}
}
