package rooms_test

import (
	"testing"

	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/rooms/roomstest"
)

func TestMemoryStoreContract(t *testing.T) {
	roomstest.RunStoreContract(t, func(*testing.T) rooms.Store { return rooms.NewMemoryStore() })
}
