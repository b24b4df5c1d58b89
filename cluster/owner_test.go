package cluster

import "testing"

// The directory records a node's owner as its actor-system ID; a departed
// member's ID must map back to it whatever the provider's format, or the
// survivors' clean-up would leave the node's connections listed.
func TestMemberOwner(t *testing.T) {
	for id, want := range map[string]string{
		"Ej7NfQk2VgRrBtnvYDmw3o":               "Ej7NfQk2VgRrBtnvYDmw3o", // redis, automanaged, consul
		"my-cluster@Ej7NfQk2VgRrBtnvYDmw3o":    "Ej7NfQk2VgRrBtnvYDmw3o", // etcd
		"name@with@ats@Ej7NfQk2VgRrBtnvYDmw3o": "Ej7NfQk2VgRrBtnvYDmw3o",
		"":                                     "",
	} {
		if got := memberOwner(id); got != want {
			t.Errorf("memberOwner(%q) = %q, want %q", id, got, want)
		}
	}
}
