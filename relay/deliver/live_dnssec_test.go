package deliver_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// TestLiveDNSSEC runs DANE against a real validating resolver: unbound,
// with the trust anchor of a zone nsd serves signed by ldns-signzone. It is
// run by .ci/transport-security.sh, which sets up the zones (see there) and
// sets INKAN_LIVE_RESOLVER (unbound's ip:port), INKAN_LIVE_PORT (the SMTP
// port in the TLSA names) and INKAN_LIVE_CERTS (good.crt, good.key: the
// certificate whose key the TLSA records of mx-good publish).
func TestLiveDNSSEC(t *testing.T) {
	resolver, portText, certs := os.Getenv("INKAN_LIVE_RESOLVER"), os.Getenv("INKAN_LIVE_PORT"), os.Getenv("INKAN_LIVE_CERTS")
	if resolver == "" {
		t.Skip("INKAN_LIVE_RESOLVER not set: run .ci/transport-security.sh")
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatalf("INKAN_LIVE_PORT=%q", portText)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "good.crt"), filepath.Join(certs, "good.key"))
	if err != nil {
		t.Fatal(err)
	}
	n := &sinkNet{port: port}
	sinks := map[string]*sink{}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		sinks[ip] = n.start(t, ip, sinkOpts{tls: tlsWith(cert)})
	}
	c := config.Delivery{TLS: "may", MXPort: port, Resolver: resolver,
		ConnectTimeout: config.Duration(5e9), CommandTimeout: config.Duration(10e9), DataTimeout: config.Duration(10e9)}
	tr := newTransport(t, deliver.Options{Config: c, IdleTimeout: -1})
	for _, tc := range []struct {
		domain, sink string
		want         queue.Status
		policy, says string
	}{
		// sec.test is signed; mx-good publishes 3 1 1 of good.crt's key.
		{"good.sec.test", "127.0.0.2", queue.Sent, "DANE (1 usable of 1 TLSA records", ""},
		// mx-bad publishes the hash of another key.
		{"bad.sec.test", "127.0.0.3", queue.Deferred, "DANE", "no TLSA record matches the certificate"},
		// mx-tamper's TLSA record was changed after signing: bogus.
		{"tamper.sec.test", "127.0.0.4", queue.Deferred, "DANE", "TLSA lookup failed"},
		// bogus.test is signed with a key its trust anchor does not name.
		{"bogus.test", "127.0.0.5", queue.Deferred, "", "SERVFAIL"},
		// insecure.test is not signed: its TLSA record (of another key) is ignored.
		{"insecure.test", "127.0.0.6", queue.Sent, "delivery.tls may", ""},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			s := sinks[tc.sink]
			before := len(s.messages())
			r := deliverOne(t, tr, delivery("a@sender.test", tc.domain, testMessage, "bob@"+tc.domain))[0]
			wantStatus(t, r, tc.want)
			if !strings.HasPrefix(r.TLSPolicy, tc.policy) {
				t.Errorf("TLSPolicy %q, want %q...", r.TLSPolicy, tc.policy)
			}
			if !strings.Contains(r.Message, tc.says) {
				t.Errorf("reply %q lacks %q", r.Message, tc.says)
			}
			got := len(s.messages()) - before
			if tc.want == queue.Sent && got != 1 || tc.want != queue.Sent && got != 0 {
				t.Errorf("sink %s got %d messages", tc.sink, got)
			}
		})
	}
}
