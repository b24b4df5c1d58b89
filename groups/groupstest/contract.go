// Package groupstest holds the contract every groups.Directory must meet, so
// that the in-memory directory and shared (cluster) ones behave the same.
package groupstest

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/groups"
)

// ID returns a valid connection ID for tests, distinct per node address and n.
func ID(node string, n int) actors.ID {
	var name [16]byte
	binary.BigEndian.PutUint64(name[8:], uint64(n))
	b64 := base64.RawURLEncoding
	id, err := actors.ParseID("ws." + b64.EncodeToString(name[:]) + "." + b64.EncodeToString([]byte(node)))
	if err != nil {
		panic(err)
	}
	return id
}

// RunDirectoryContract runs the directory contract against directories made
// by newDir; each subtest gets a fresh, empty one.
func RunDirectoryContract(t *testing.T, newDir func(t *testing.T) groups.Directory) {
	ctx := context.Background()
	a, b, c := ID("127.0.0.2:6330", 1), ID("127.0.0.2:6330", 2), ID("127.0.0.3:6330", 3)

	t.Run("join, list and leave", func(t *testing.T) {
		d := newDir(t)
		mustJoin(t, d, "lobby", groups.Member{ID: b, User: "bob", Meta: map[string]string{"name": "Bob"}}, true)
		mustJoin(t, d, "lobby", groups.Member{ID: a, User: "ann", Meta: map[string]string{"name": "Ann"}}, true)
		mustJoin(t, d, "dev", groups.Member{ID: a, User: "ann"}, true)
		want := []groups.Member{{ID: a, User: "ann", Meta: map[string]string{"name": "Ann"}}, {ID: b, User: "bob", Meta: map[string]string{"name": "Bob"}}}
		wantMembers(t, d, "lobby", want)
		wantGroups(t, d, a, []string{"dev", "lobby"})
		left, err := d.Leave(ctx, "lobby", a)
		if err != nil || !left {
			t.Fatalf("Leave = %v, %v", left, err)
		}
		left, err = d.Leave(ctx, "lobby", a)
		if err != nil || left {
			t.Fatalf("second Leave = %v, %v; want false", left, err)
		}
		wantMembers(t, d, "lobby", want[1:])
		wantGroups(t, d, a, []string{"dev"})
	})

	t.Run("join twice updates meta", func(t *testing.T) {
		d := newDir(t)
		mustJoin(t, d, "lobby", groups.Member{ID: a, Meta: map[string]string{"name": "Ann"}}, true)
		mustJoin(t, d, "lobby", groups.Member{ID: a, Meta: map[string]string{"name": "Annie"}}, false)
		wantMembers(t, d, "lobby", []groups.Member{{ID: a, Meta: map[string]string{"name": "Annie"}}})
	})

	t.Run("leave all", func(t *testing.T) {
		d := newDir(t)
		for _, g := range []string{"x", "y", "z"} {
			mustJoin(t, d, g, groups.Member{ID: a}, true)
		}
		mustJoin(t, d, "y", groups.Member{ID: c}, true)
		left, err := d.LeaveAll(ctx, a)
		if err != nil || !slices.Equal(left, []string{"x", "y", "z"}) {
			t.Fatalf("LeaveAll = %v, %v", left, err)
		}
		wantGroups(t, d, a, nil)
		wantMembers(t, d, "x", nil)
		wantMembers(t, d, "y", []groups.Member{{ID: c}})
		if left, err := d.LeaveAll(ctx, a); err != nil || len(left) != 0 {
			t.Fatalf("LeaveAll again = %v, %v", left, err)
		}
	})

	t.Run("count", func(t *testing.T) {
		d := newDir(t)
		wantCount(t, d, "lobby", 0)
		mustJoin(t, d, "lobby", groups.Member{ID: a}, true)
		mustJoin(t, d, "lobby", groups.Member{ID: b, Meta: map[string]string{"name": "Bob"}}, true)
		mustJoin(t, d, "lobby", groups.Member{ID: b, Meta: map[string]string{"name": "Bobby"}}, false)
		mustJoin(t, d, "lobby", groups.Member{ID: c}, true)
		mustJoin(t, d, "dev", groups.Member{ID: a}, true)
		wantCount(t, d, "lobby", 3)
		wantCount(t, d, "dev", 1)
		if _, err := d.Leave(ctx, "lobby", b); err != nil {
			t.Fatal(err)
		}
		wantCount(t, d, "lobby", 2)
		if _, err := d.LeaveAll(ctx, a); err != nil {
			t.Fatal(err)
		}
		wantCount(t, d, "lobby", 1)
		wantCount(t, d, "dev", 0)
		wantCount(t, d, "x*", 0) // a pattern character is no pattern
		wantCount(t, d, string(make([]byte, groups.MaxGroupLen+1)), 0)
	})

	t.Run("unknown group and connection", func(t *testing.T) {
		d := newDir(t)
		wantMembers(t, d, "nobody-here", nil)
		wantGroups(t, d, a, nil)
		if ids, err := d.UserConns(ctx, "ghost"); err != nil || len(ids) != 0 {
			t.Fatalf("UserConns = %v, %v", ids, err)
		}
	})

	t.Run("invalid group names", func(t *testing.T) {
		d := newDir(t)
		for _, g := range []string{"", string(make([]byte, groups.MaxGroupLen+1))} {
			if _, err := d.Join(ctx, g, groups.Member{ID: a}); !errors.Is(err, groups.ErrInvalidGroup) {
				t.Fatalf("Join(%d-byte name): want ErrInvalidGroup, got %v", len(g), err)
			}
		}
	})

	t.Run("names are opaque", func(t *testing.T) {
		d := newDir(t)
		odd := []string{"room:1", "a b", "ünïcødé", "x*", "{tag}", "a/b"}
		for _, g := range odd {
			mustJoin(t, d, g, groups.Member{ID: a}, true)
		}
		wantGroups(t, d, a, slices.Sorted(slices.Values(odd)))
		mustJoin(t, d, "x", groups.Member{ID: b}, true)
		wantMembers(t, d, "x*", []groups.Member{{ID: a}})
	})

	t.Run("user index", func(t *testing.T) {
		d := newDir(t)
		for _, id := range []actors.ID{c, a} {
			if err := d.AddUserConn(ctx, "ann", id); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.AddUserConn(ctx, "bob", b); err != nil {
			t.Fatal(err)
		}
		wantUserConns(t, d, "ann", []actors.ID{a, c})
		if err := d.RemoveUserConn(ctx, "ann", a); err != nil {
			t.Fatal(err)
		}
		if err := d.RemoveUserConn(ctx, "ann", a); err != nil {
			t.Fatalf("removing twice: %v", err)
		}
		wantUserConns(t, d, "ann", []actors.ID{c})
		wantUserConns(t, d, "bob", []actors.ID{b})
	})

	t.Run("returned values are copies", func(t *testing.T) {
		d := newDir(t)
		meta := map[string]string{"name": "Ann"}
		mustJoin(t, d, "lobby", groups.Member{ID: a, Meta: meta}, true)
		meta["name"] = "changed after join"
		ms, _ := d.Members(ctx, "lobby")
		ms[0].Meta["name"] = "changed after listing"
		wantMembers(t, d, "lobby", []groups.Member{{ID: a, Meta: map[string]string{"name": "Ann"}}})
	})

	t.Run("concurrent joins and leaves", func(t *testing.T) {
		d := newDir(t)
		const n = 50
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				id := ID("127.0.0.2:6330", 100+i)
				if _, err := d.Join(ctx, "busy", groups.Member{ID: id}); err != nil {
					t.Error(err)
				}
				if i%2 == 0 {
					if _, err := d.Leave(ctx, "busy", id); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		ms, err := d.Members(ctx, "busy")
		if err != nil || len(ms) != n/2 {
			t.Fatalf("after %d joins and %d leaves: %d members, %v", n, n/2, len(ms), err)
		}
	})
}

func mustJoin(t *testing.T, d groups.Directory, g string, m groups.Member, wantJoined bool) {
	t.Helper()
	joined, err := d.Join(context.Background(), g, m)
	if err != nil || joined != wantJoined {
		t.Fatalf("Join(%q, %s) = %v, %v; want %v", g, m.ID, joined, err, wantJoined)
	}
}

func wantMembers(t *testing.T, d groups.Directory, g string, want []groups.Member) {
	t.Helper()
	got, err := d.Members(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, func(x, y groups.Member) bool {
		return x.ID == y.ID && x.User == y.User && maps.Equal(x.Meta, y.Meta)
	}) {
		t.Fatalf("Members(%q) = %+v, want %+v", g, got, want)
	}
}

func wantCount(t *testing.T, d groups.Directory, g string, want int) {
	t.Helper()
	got, err := d.Count(context.Background(), g)
	if err != nil || got != want {
		t.Fatalf("Count(%.20q) = %d, %v; want %d", g, got, err, want)
	}
	if ms, err := d.Members(context.Background(), g); err != nil || len(ms) != got {
		t.Fatalf("Count(%.20q) = %d but Members lists %d (%v)", g, got, len(ms), err)
	}
}

func wantGroups(t *testing.T, d groups.Directory, id actors.ID, want []string) {
	t.Helper()
	got, err := d.Groups(context.Background(), id)
	if err != nil || !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("Groups(%s) = %v, %v; want %v", id, got, err, want)
	}
}

func wantUserConns(t *testing.T, d groups.Directory, user string, want []actors.ID) {
	t.Helper()
	got, err := d.UserConns(context.Background(), user)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("UserConns(%q) = %v, %v; want %v", user, got, err, want)
	}
}
