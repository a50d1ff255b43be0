package deliver_test

import (
	"crypto/tls"
	"strconv"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// daneEnv is dane.test, DNSSEC-signed, with MX mx1.dane.test on 127.0.0.2.
type daneEnv struct {
	zone *signedZone
	dns  string
	net  *sinkNet
}

func newDANEEnv(t *testing.T) *daneEnv {
	t.Helper()
	z, addr := startSignedDNS(t)
	z.sign("dane.test")
	z.add(t, "dane.test. 300 IN MX 10 mx1.dane.test.", "mx1.dane.test. 300 IN A 127.0.0.2")
	return &daneEnv{zone: z, dns: addr, net: newSinkNet(t)}
}

func (e *daneEnv) tlsaName() string { return "_" + strconv.Itoa(e.net.port) + "._tcp.mx1.dane.test." }

func (e *daneEnv) addTLSA(t *testing.T, records ...string) {
	t.Helper()
	for _, r := range records {
		e.zone.add(t, e.tlsaName()+" 300 IN TLSA "+r)
	}
}

func (e *daneEnv) transport(t *testing.T, mod ...func(*config.Delivery)) *deliver.Transport {
	t.Helper()
	c := config.Delivery{TLS: "may", MXPort: e.net.port, Resolver: e.dns,
		ConnectTimeout: config.Duration(5e9), CommandTimeout: config.Duration(10e9), DataTimeout: config.Duration(10e9)}
	for _, f := range mod {
		f(&c)
	}
	return newTransport(t, deliver.Options{Config: c, RootCAs: policyCA(t).pool})
}

func (e *daneEnv) send(t *testing.T, tr *deliver.Transport) queue.Result {
	t.Helper()
	return deliverOne(t, tr, delivery("a@sender.test", "dane.test", testMessage, "bob@dane.test"))[0]
}

func TestDANE(t *testing.T) {
	ca := policyCA(t).cert
	good := sinkCert(t, goodCert, "mx1.dane.test")
	self := sinkCert(t, selfSignedCert, "mx1.dane.test")
	expired := sinkCert(t, expiredCert, "mx1.dane.test")
	other := sinkCert(t, selfSignedCert, "other.example")
	for _, tc := range []struct {
		name   string
		cert   tls.Certificate
		tlsa   []string
		want   queue.Status
		says   string
		policy string
	}{
		// DANE-EE: the server's own key; its name and dates do not matter.
		{"EE match", self, []string{tlsaRecord(3, self.Leaf)}, queue.Sent, "", "DANE (1 usable of 1 TLSA records"},
		{"EE match, expired certificate", expired, []string{tlsaRecord(3, expired.Leaf)}, queue.Sent, "", "DANE"},
		{"EE one of two", self, []string{tlsaRecord(3, other.Leaf), tlsaRecord(3, self.Leaf)}, queue.Sent, "", "DANE"},
		// DANE-TA: the CA in the chain the server sends; name and dates count.
		{"TA match", good, []string{tlsaRecord(2, ca)}, queue.Sent, "", "DANE"},
		{"TA match, wrong name", sinkCert(t, wrongNameCert, "mx1.dane.test"), []string{tlsaRecord(2, ca)}, queue.Deferred, "DANE-TA trust anchor does not hold", "DANE"},
		{"mismatch", self, []string{tlsaRecord(3, other.Leaf)}, queue.Deferred, "no TLSA record matches the certificate", "DANE"},
		{"TA not in chain", self, []string{tlsaRecord(2, ca)}, queue.Deferred, "no TLSA record matches", "DANE"},
		// PKIX-EE(1) is not used for SMTP (RFC 7672 section 3.1.3): TLS without authentication.
		{"only unusable records", other, []string{"1 1 1 " + strings.Repeat("ab", 32)}, queue.Sent, "", "TLS without authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newDANEEnv(t)
			e.addTLSA(t, tc.tlsa...)
			mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(tc.cert)})
			r := e.send(t, e.transport(t))
			wantStatus(t, r, tc.want)
			if !strings.Contains(r.TLSPolicy, tc.policy) {
				t.Errorf("TLSPolicy %q lacks %q", r.TLSPolicy, tc.policy)
			}
			if tc.want == queue.Sent {
				if m := mx.messages(); len(m) != 1 || !m[0].tls {
					t.Fatalf("sink got %+v, want one message over TLS", m)
				}
				return
			}
			wantInMessage(t, r, tc.says)
			if mx.mails.Load() != 0 {
				t.Error("MAIL sent to a server whose certificate DANE refused")
			}
		})
	}
}

// A DANE host without STARTTLS is not sent the mail in clear.
func TestDANENoSTARTTLS(t *testing.T) {
	e := newDANEEnv(t)
	e.addTLSA(t, tlsaRecord(3, sinkCert(t, selfSignedCert, "x").Leaf))
	mx := e.net.start(t, "127.0.0.2", sinkOpts{})
	r := e.send(t, e.transport(t))
	wantStatus(t, r, queue.Deferred)
	wantInMessage(t, r, "does not offer STARTTLS", "DANE")
	if mx.mails.Load() != 0 {
		t.Error("mail sent in clear to a DANE host")
	}
}

// Bogus DNSSEC (SERVFAIL from the validating resolver) defers without a
// connection.
func TestDANEBogus(t *testing.T) {
	e := newDANEEnv(t)
	e.zone.bogus(e.tlsaName())
	mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: serverTLS(t)})
	r := e.send(t, e.transport(t))
	wantStatus(t, r, queue.Deferred)
	wantInMessage(t, r, "DANE", "TLSA lookup failed", "SERVFAIL")
	if mx.conns.Load() != 0 {
		t.Error("connected to a host whose TLSA records are bogus")
	}
	// A bogus MX answer: the MX lookup itself fails.
	e2 := newDANEEnv(t)
	e2.zone.bogus("dane.test")
	wantStatus(t, e2.send(t, e2.transport(t)), queue.Deferred)
}

// An unsigned zone stays opportunistic, TLSA records or not; so does a host
// whose addresses are unsigned, and a signed host behind an unsigned MX.
func TestDANEInsecureIsOpportunistic(t *testing.T) {
	for name, setup := range map[string]func(e *daneEnv){
		"unsigned zone":      func(e *daneEnv) { e.zone.unsign("dane.test") },
		"unsigned addresses": func(e *daneEnv) { e.zone.unsign("mx1.dane.test") },
		"unsigned MX":        func(e *daneEnv) { e.zone.unsign("dane.test"); e.zone.sign("mx1.dane.test") },
	} {
		t.Run(name, func(t *testing.T) {
			e := newDANEEnv(t)
			setup(e)
			e.addTLSA(t, tlsaRecord(3, sinkCert(t, selfSignedCert, "x").Leaf)) // matches nothing
			mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: serverTLS(t)})
			r := e.send(t, e.transport(t))
			wantStatus(t, r, queue.Sent)
			if strings.Contains(r.TLSPolicy, "DANE") || len(mx.messages()) != 1 {
				t.Errorf("policy %q, %d messages", r.TLSPolicy, len(mx.messages()))
			}
		})
	}
}

// DANE wins over MTA-STS (RFC 8461 section 2): a DANE-valid host is used
// even though the MTA-STS policy lists other hosts and the certificate is
// not valid for the web PKI.
func TestDANEWinsOverMTASTS(t *testing.T) {
	e := newDANEEnv(t)
	e.zone.add(t, `_mta-sts.dane.test. 300 IN TXT "v=STSv1; id=1;"`)
	ps := startPolicyServer(t, e.zone.zone, "dane.test")
	ps.set("dane.test", stsPolicy("enforce", 86400, "elsewhere.dane.test"))
	self := sinkCert(t, selfSignedCert, "mx1.dane.test")
	e.addTLSA(t, tlsaRecord(3, self.Leaf))
	mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(self)})
	r := e.send(t, e.transport(t))
	wantStatus(t, r, queue.Sent)
	if !strings.HasPrefix(r.TLSPolicy, "DANE") || len(mx.messages()) != 1 {
		t.Errorf("policy %q, %d messages", r.TLSPolicy, len(mx.messages()))
	}
}

// tls_policy dane requires usable DANE records.
func TestRequireDANE(t *testing.T) {
	e := newDANEEnv(t)
	mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: serverTLS(t)})
	tr := e.transport(t, func(c *config.Delivery) { c.TLSPolicy = map[string]string{"dane.test": config.TLSModeDANE} })
	r := e.send(t, tr)
	wantStatus(t, r, queue.Deferred)
	wantInMessage(t, r, "delivery.tls_policy.dane.test requires DANE for dane.test", "no DNSSEC-signed TLSA records")
	if mx.conns.Load() != 0 {
		t.Error("connected without the required DANE records")
	}
}

// With DANE off the records are ignored.
func TestDANEOff(t *testing.T) {
	e := newDANEEnv(t)
	e.addTLSA(t, tlsaRecord(3, sinkCert(t, selfSignedCert, "x").Leaf))
	mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: serverTLS(t)})
	off := false
	wantStatus(t, e.send(t, e.transport(t, func(c *config.Delivery) { c.DANE.Enabled = &off })), queue.Sent)
	if len(mx.messages()) != 1 {
		t.Error("not delivered")
	}
}
