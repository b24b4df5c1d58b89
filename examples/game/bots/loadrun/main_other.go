//go:build !linux

// Command loadrun is the game's load run; it reads /proc and runs on Linux
// only (see main.go).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "loadrun: Linux only (it reads the nodes' CPU time and memory in /proc)")
	os.Exit(1)
}
