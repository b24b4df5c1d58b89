//go:build linux

package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go supports (the kernel's ABI, whatever its HZ).
const clockTicks = 100

// cpuSeconds returns the user + system CPU time of process pid so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields that
	// follow start after its last ")". utime and stime are fields 14 and 15.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	return float64(utime+stime) / clockTicks, nil
}

// memory returns a process's resident set and its peak, in MiB.
func memory(pid int) (rss, peak float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak, nil
}

// loadAvg returns the 1-, 5- and 15-minute load averages: how busy the
// shared machine was, to read the numbers against.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// cpuPressure returns the share of the last 10 s during which runnable
// tasks waited for a CPU (/proc/pressure/cpu, "some avg10"), in percent.
func cpuPressure() string {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return "?"
	}
	for f := range strings.FieldsSeq(string(b)) {
		if v, ok := strings.CutPrefix(f, "avg10="); ok {
			return v + "%"
		}
	}
	return "?"
}

// logLine matches the level and message of a slog text line.
var logLine = regexp.MustCompile(`level=(WARN|ERROR) msg=("(?:[^"\\]|\\.)*"|\S+)`)

// logCount is how often one warning or error appeared in a node's log.
type logCount struct {
	Node  string `json:"node"`
	Phase string `json:"phase"` // "run" (up to the window's end) or "stop" (after)
	Level string `json:"level"`
	Msg   string `json:"msg"`
	Count int    `json:"count"`
	First string `json:"first"` // the first such line
}

// countLogs groups a node's warnings and errors by message, those of the
// run apart from those of its shutdown (lines from index stopAt on).
func countLogs(node string, lines []string, stopAt int) []logCount {
	var out []logCount
	for i, line := range lines {
		m := logLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		phase := "run"
		if i >= stopAt {
			phase = "stop"
		}
		msg, err := strconv.Unquote(m[2])
		if err != nil {
			msg = m[2]
		}
		j := slices.IndexFunc(out, func(c logCount) bool { return c.Phase == phase && c.Level == m[1] && c.Msg == msg })
		if j < 0 {
			out = append(out, logCount{Node: node, Phase: phase, Level: m[1], Msg: msg, First: line})
			j = len(out) - 1
		}
		out[j].Count++
	}
	return out
}
