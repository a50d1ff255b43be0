package main_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-smtp"
)

// OpenDKIM's InternalHosts says whose mail to sign; relaying without AUTH
// was Postfix's mynetworks. Reading opendkim.conf must not open the relay
// to the hosts it lists.
func TestInternalHostsDoNotRelayWithoutAuth(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "opendkim.conf")
	if err := os.WriteFile(conf, []byte("Syslog yes\nInternalHosts 127.0.0.1,::1,10.0.0.0/8\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := &inkan{t: t, dir: dir, logs: &syncBuffer{},
		relay: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		sub:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		smtps: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		http:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	cfg := fmt.Sprintf(`hostname: relay.test.example
data_dir: %s
listen:
  smtps: "%s"
  submission: "%s"
  relay: "%s"
  http: "%s"
auth:
  trusted_networks: [192.0.2.1/32]   # not loopback: the default trusts it
delivery:
  resolver: "127.0.0.1:9"
dkim:
  opendkim_conf: %s
`, filepath.Join(dir, "data"), in.smtps, in.sub, in.relay, in.http, conf)
	in.cfgPath = filepath.Join(dir, "inkan.yaml")
	if err := os.WriteFile(in.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	in.start()

	c, err := smtp.Dial(in.relay)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("internal.test"); err != nil {
		t.Fatal(err)
	}
	err = c.Mail("app@example.com", nil)
	if err == nil {
		err = c.Rcpt("someone@example.net", nil)
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("a client listed only in InternalHosts relayed without AUTH: %v", err)
	}
	waitLog(t, in, "InternalHosts")
	waitLog(t, in, "auth.trusted_networks")
}
