package main

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h), which the
// syscall package does not name.
const ipBindAddressNoPort = 24

// bindAddressNoPort lets a dial bound to a source address (Dialer.LocalAddr)
// pick its port at connect time, per destination, as an unbound connect
// does. Without it, bind reserves the port for every destination, so a
// source address runs out after ~28,000 connections counting those still in
// TIME_WAIT from an earlier round.
func bindAddressNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
