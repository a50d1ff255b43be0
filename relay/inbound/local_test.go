package inbound_test

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/inbound"
)

// dialLocal opens an SMTP session on the local listener as uid, the way
// the maildrop pickup does.
func (e *env) dialLocal(uid int) *smtp.Client {
	e.t.Helper()
	conn, err := e.srv.DialLocal(uid)
	if err != nil {
		e.t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	e.t.Cleanup(func() { c.Close() })
	if err := c.Hello("localhost"); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// A local submission is the SMTP path with the uid as identity: root may
// send as anyone and is signed as any other sender; another user only as
// what auth.local_senders (or its own name) allows, in MAIL FROM and From;
// Received says "from userid N" as Postfix's does.
func TestLocalSubmissionAsUID(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Auth.LocalSenders = map[string][]string{"nobody": {"@example.org"}}
	})
	reply, err := send(e.dialLocal(0), "ceo@example.com", []string{"x@example.net"}, msg("ceo@example.com", "x@example.net", "root"))
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	b := e.body(queuedID(t, reply))
	if !bytes.Contains(b, []byte("Received: by mx.test.example (inkan, from userid 0)\r\n\tid ")) || len(e.verifyDKIM(b)) == 0 {
		t.Errorf("root's message: no Received from userid 0 or no signature:\n%s", b)
	}

	if _, err := send(e.dialLocal(65534), "ops@example.org", []string{"x@example.net"}, msg("ops@example.org", "x@example.net", "listed")); err != nil {
		t.Errorf("nobody as an address auth.local_senders lists: %v", err)
	}
	for _, tc := range []struct {
		from, header string
		code         int
	}{
		{"root@mx.test.example", "root@mx.test.example", 553}, // MAIL FROM
		{"ops@example.org", "ceo@example.com", 550},           // the header From, at DATA
	} {
		_, err := send(e.dialLocal(65534), tc.from, []string{"x@example.net"}, msg(tc.header, "x@example.net", "forged"))
		if code(err) != tc.code || enhanced(err) != "5.7.1" || !strings.Contains(err.Error(), "Local user nobody (uid 65534)") || !strings.Contains(err.Error(), "@example.org") {
			t.Errorf("nobody, MAIL FROM %s, From %s: %v; want %d 5.7.1 naming the user and what it may use", tc.from, tc.header, err, tc.code)
		}
	}
	// A uid without an account name may send as nobody at all.
	if _, err := send(e.dialLocal(54321), "a@example.org", []string{"x@example.net"}, msg("a@example.org", "x@example.net", "x")); code(err) != 553 {
		t.Errorf("uid without a name: %v, want 553", err)
	}
	if !strings.Contains(e.logs.String(), "uid=65534") {
		t.Errorf("the log does not name the uid")
	}
}

// The Unix socket: the kernel says who connects; the socket is usable by
// everyone, in a folder nobody else may write.
func TestLocalSocket(t *testing.T) {
	sock := ""
	e := start(t, func(c *config.Config) {
		c.Listen.Local = "local.sock"
		c.Limits.MaxConnectionsPerIP = 2
		sock = filepath.Join(c.DataDir, "local.sock")
	})
	if e.srv.LocalAddr() != sock {
		t.Fatalf("LocalAddr = %q, want %q", e.srv.LocalAddr(), sock)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket: %v %v", fi.Mode(), err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Errorf("STARTTLS offered on the local socket")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Errorf("AUTH offered on the local socket")
	}
	reply, err := send(c, "anyone@example.org", []string{"x@example.net"}, msg("anyone@example.org", "x@example.net", "sock"))
	if err != nil {
		t.Fatal(err)
	}
	uid := os.Geteuid()
	if b := e.body(queuedID(t, reply)); !bytes.Contains(b, []byte("from userid "+strconv.Itoa(uid)+")")) {
		t.Errorf("no Received with the peer's uid:\n%s", b)
	}
	// One uid holds at most limits.max_connections_per_ip connections.
	second, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	bufio.NewReader(second).ReadString('\n') // its greeting: counted
	third, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if line, _ := bufio.NewReader(third).ReadString('\n'); !strings.HasPrefix(line, "421 4.7.0 Too many connections from uid") {
		t.Errorf("third connection of one uid: %q, want 421", line)
	}
}

func TestLocalSenders(t *testing.T) {
	cfg := config.Default()
	cfg.Hostname = "mail.example.com"
	cfg.Auth.LocalSenders = map[string][]string{"www-data": {"@example.com"}, "ops": {"*"}}
	for _, tc := range []struct {
		uid  int
		name string
		any  bool
		want string // first pattern
	}{
		{0, "root", true, ""},
		{1000, "inkan", true, ""}, // the server's own uid (below)
		{33, "www-data", false, "@example.com"},
		{34, "ops", true, ""},
		{1001, "alice", false, "alice@example.org"}, // the only signing domain is the origin
		{54321, "", false, ""},
	} {
		pats, any, err := inbound.LocalSenders(cfg, []string{"example.org"}, tc.uid, tc.name, 1000)
		first := ""
		if len(pats) > 0 {
			first = pats[0]
		}
		if err != nil || any != tc.any || first != tc.want {
			t.Errorf("uid %d (%s): %v any=%v err=%v; want any=%v first %q", tc.uid, tc.name, pats, any, err, tc.any, tc.want)
		}
	}
	cfg.Auth.LocalSenders["bad"] = []string{"not an address"}
	if _, _, err := inbound.LocalSenders(cfg, nil, 5, "bad", 1000); err == nil || !strings.Contains(err.Error(), "auth.local_senders") {
		t.Errorf("a bad pattern: %v", err)
	}
}
