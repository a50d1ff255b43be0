package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// registry remembers how to stop everything the harness started, so that a
// failed phase, the timeout or Ctrl-C never leaves a process running.
// Stoppers run newest first; each runs at most once.
type registry struct {
	mu    sync.Mutex
	next  int
	items []stopper
}

type stopper struct {
	id   int
	name string
	stop func()
}

func (r *registry) add(name string, stop func()) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	r.items = append(r.items, stopper{id: r.next, name: name, stop: stop})
	return r.next
}

// run runs and forgets the stopper id; unknown ids are ignored.
func (r *registry) run(id int) {
	r.mu.Lock()
	var s *stopper
	for i := range r.items {
		if r.items[i].id == id {
			it := r.items[i]
			s = &it
			r.items = append(r.items[:i], r.items[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// forget drops a stopper without running it (the process ended already).
func (r *registry) forget(id int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.items {
		if r.items[i].id == id {
			r.items = append(r.items[:i], r.items[i+1:]...)
			return
		}
	}
}

// stopAll runs every remaining stopper, newest first.
func (r *registry) stopAll() {
	for {
		r.mu.Lock()
		if len(r.items) == 0 {
			r.mu.Unlock()
			return
		}
		s := r.items[len(r.items)-1]
		r.items = r.items[:len(r.items)-1]
		r.mu.Unlock()
		logf("stopping %s", s.name)
		s.stop()
	}
}

// child is a process the harness started. done closes when it was reaped.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done
	reg  *registry
	id   int
}

// startChild starts cmd with its output appended to logFile and registers
// it for stopping. The kernel kills it should the harness die first.
func startChild(reg *registry, name string, cmd *exec.Cmd, logFile string) (*child, error) {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	defer f.Close() // the child holds its own descriptor
	fmt.Fprintf(f, "---- %s: %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), reg: reg}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	c.id = reg.add(fmt.Sprintf("%s (pid %d)", name, cmd.Process.Pid), func() { c.terminate(20 * time.Second) })
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// exitCode is the status of an exited child (-1: killed by a signal).
func (c *child) exitCode() int {
	<-c.done
	return c.cmd.ProcessState.ExitCode()
}

// stop terminates the process (SIGTERM, SIGKILL after a grace period) and
// waits for it.
func (c *child) stop() { c.reg.run(c.id) }

// kill sends SIGKILL to this process (by its PID) and waits until reaped.
func (c *child) kill() {
	c.reg.forget(c.id)
	if !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-c.done
}

// terminate sends SIGTERM, then SIGKILL after grace; it reports whether
// SIGKILL was needed.
func (c *child) terminate(grace time.Duration) bool {
	if c.exited() {
		return false
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return false
	case <-time.After(grace):
	}
	logf("%s (pid %d) ignored SIGTERM for %s; killing it", c.name, c.pid(), grace)
	_ = c.cmd.Process.Kill()
	<-c.done
	return true
}

// waitDial waits until addr accepts TCP connections; alive, when set,
// reports a server that died first.
func waitDial(ctx context.Context, addr string, limit time.Duration, alive func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if alive != nil && !alive() {
			return fmt.Errorf("process exited before listening on %s", addr)
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listening on %s after %s: %w", addr, limit, errors.Join(err, ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runCmd runs a short command and returns its combined output.
func runCmd(ctx context.Context, limit time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}
