package groups

import "slices"

// groupSet is the groups of one connection, in the indexes kept per
// connection (Hub.byConn, MemoryDirectory.byConn). Most connections are in
// one group or a few: a short slice costs a few dozen bytes where a map
// costs ~200, for every connection of the node. Past groupSetMap groups it
// becomes a map, so that joins and leaves stay O(1).
type groupSet struct {
	few  []string
	many map[string]struct{}
}

const groupSetMap = 16

// add reports whether g was not in the set.
func (s *groupSet) add(g string) bool {
	if s.many != nil {
		if _, ok := s.many[g]; ok {
			return false
		}
		s.many[g] = struct{}{}
		return true
	}
	if slices.Contains(s.few, g) {
		return false
	}
	if len(s.few) < groupSetMap {
		s.few = append(s.few, g)
		return true
	}
	s.many = make(map[string]struct{}, len(s.few)+1)
	for _, x := range s.few {
		s.many[x] = struct{}{}
	}
	s.many[g] = struct{}{}
	s.few = nil
	return true
}

// remove reports whether g was in the set.
func (s *groupSet) remove(g string) bool {
	if s.many != nil {
		_, ok := s.many[g]
		delete(s.many, g)
		return ok
	}
	i := slices.Index(s.few, g)
	if i < 0 {
		return false
	}
	s.few = slices.Delete(s.few, i, i+1)
	return true
}

func (s *groupSet) len() int { return len(s.few) + len(s.many) }

// sorted returns the groups in order, in a new slice.
func (s *groupSet) sorted() []string {
	out := make([]string, 0, s.len())
	out = append(out, s.few...)
	for g := range s.many {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}
