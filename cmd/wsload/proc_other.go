//go:build !linux

package main

import "syscall"

// childAttr puts a child in its own process group. Outside Linux there is
// no parent-death signal: children of an orchestrator killed with SIGKILL
// must be stopped by hand (their process group id is printed in the log).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
