//go:build !race

package cluster_test

// raceBuild says whether this test binary was built with -race.
const raceBuild = false
