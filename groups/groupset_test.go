package groups

import (
	"fmt"
	"slices"
	"testing"
)

// TestGroupSet checks the small set against a map through the switch from
// slice to map and back down to empty.
func TestGroupSet(t *testing.T) {
	var s groupSet
	want := map[string]bool{}
	check := func(step string) {
		t.Helper()
		var keys []string
		for g := range want {
			keys = append(keys, g)
		}
		slices.Sort(keys)
		if got := s.sorted(); !slices.Equal(got, keys) || s.len() != len(keys) {
			t.Fatalf("%s: sorted %v len %d, want %v", step, got, s.len(), keys)
		}
	}
	for i := range 3 * groupSetMap {
		g := fmt.Sprintf("g%02d", (i*7)%(2*groupSetMap))
		if added := s.add(g); added == want[g] {
			t.Fatalf("add %s reported %v with the group already there: %v", g, added, want[g])
		}
		want[g] = true
		check("add " + g)
	}
	for i := range 2 * groupSetMap {
		g := fmt.Sprintf("g%02d", i)
		if removed := s.remove(g); removed != want[g] {
			t.Fatalf("remove %s reported %v, want %v", g, removed, want[g])
		}
		delete(want, g)
		check("remove " + g)
	}
	if s.remove("g00") || s.len() != 0 {
		t.Fatal("an empty set removed something")
	}
}
