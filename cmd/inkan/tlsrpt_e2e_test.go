package main_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/relay/dnsutil/dnstest"
)

// The counts of a day that ended while inkan was stopped are reported when
// it starts: the report goes to the rua of _smtp._tls through inkan's own
// queue, DKIM-signed for the report address's domain.
func TestTLSReportThroughOwnQueue(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")

	// DNS: sts.test asks for reports at tlsrpt@rua.test; the DKIM key of relay.test.example.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyFile := filepath.Join(dir, "s1.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	resolver := dnstest.Serve(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if q := r.Question[0]; q.Qtype == dns.TypeTXT && strings.EqualFold(q.Name, "_smtp._tls.sts.test.") {
			rr, _ := dns.NewRR(`_smtp._tls.sts.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@rua.test"`)
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	}))

	// Yesterday's counts, as a previous run saved them.
	yesterday := time.Now().UTC().Add(-24 * time.Hour).Format(time.DateOnly)
	if err := os.MkdirAll(filepath.Join(data, "tls-rpt"), 0o700); err != nil {
		t.Fatal(err)
	}
	saved := fmt.Sprintf(`{"day":%q,"domains":{"sts.test":{"policies":[{"policy":{"type":"sts",`+
		`"strings":"version: STSv1\nmode: enforce\nmx: mx1.sts.test\nmax_age: 86400","mx_hosts":"mx1.sts.test"},`+
		`"success":7,"failures":[{"result_type":"certificate-expired","mx_host":"mx1.sts.test","receiving_ip":"192.0.2.1","count":2}]}]}}}`, yesterday)
	if err := os.WriteFile(filepath.Join(data, "tls-rpt", "current.json"), []byte(saved), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(data, 0o700)

	cfg := fmt.Sprintf(`hostname: relay.test.example
data_dir: %s
listen: {smtps: "127.0.0.1:%d", submission: "127.0.0.1:%d", relay: "", http: "", local: ""}
queue: {maildrop: "", retry_min: 1s, retry_max: 2s}
dkim:
  keys: [{domain: relay.test.example, selector: s1, key_file: %s}]
delivery:
  resolver: %q
  transport: {rua.test: "[127.0.0.1]:%s"}
  tls_rpt: {enabled: true, organization: "inkan e2e"}
`, data, freePort(t), freePort(t), keyFile, resolver, portOf(s.addr))
	cfgPath := filepath.Join(dir, "inkan.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd := exec.Command(binPath, "serve", "-config", cfgPath, "-quiet")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("inkan logs:\n%s", logs)
		}
	})

	got := s.wait(t, 1)[0]
	if got.from != "tls-reports@relay.test.example" || len(got.to) != 1 || got.to[0] != "tlsrpt@rua.test" {
		t.Fatalf("report from %q to %v", got.from, got.to)
	}
	msg := string(got.data)
	for _, want := range []string{"TLS-Report-Domain: sts.test", "TLS-Report-Submitter: relay.test.example",
		`report-type="tlsrpt"`, "application/tlsrpt+gzip", "DKIM-Signature:", "d=relay.test.example", "s=s1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	// The signature verifies against the key (looked up without DNS).
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(got.data), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			return []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}, nil
		},
	})
	if err != nil || len(verifs) == 0 || verifs[0].Err != nil {
		t.Errorf("DKIM: %v %+v", err, verifs)
	}
	// Sent once: the day is no longer pending.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m, _ := filepath.Glob(filepath.Join(data, "tls-rpt", "day-*.json"))
		if len(m) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reported day still pending: %v", m)
		}
	}
}
