package main

import "syscall"

// childAttr puts a child in its own process group (a terminal's Ctrl-C
// reaches the orchestrator only, which then stops its children in order) and
// has the kernel kill it if the orchestrator dies without doing so.
//
// Pdeathsig fires when the thread that started the child exits; the Go
// runtime ends threads only when a goroutine exits while locked to one,
// which the orchestrator never does.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
