//go:build !linux

package main

import "syscall"

// bindAddressNoPort does nothing outside Linux: each source address then
// holds one port per connection whatever the destination.
func bindAddressNoPort(_, _ string, _ syscall.RawConn) error { return nil }
