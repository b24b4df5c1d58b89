package groups_test

import (
	"testing"

	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/groups/groupstest"
)

func TestMemoryDirectoryContract(t *testing.T) {
	groupstest.RunDirectoryContract(t, func(*testing.T) groups.Directory { return groups.NewMemoryDirectory() })
}
