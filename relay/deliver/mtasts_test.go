package deliver_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// stsEnv is a domain sts.test with an MTA-STS policy, its MX hosts on
// 127.0.0.2 (mx1) and 127.0.0.3 (mx2), and a policy server.
type stsEnv struct {
	*env
	ps *policyServer
}

func newSTSEnv(t *testing.T, policy string) *stsEnv {
	t.Helper()
	e := newEnv(t)
	e.zone.add(t,
		"sts.test. 300 IN MX 10 mx1.sts.test.",
		"mx1.sts.test. 300 IN A 127.0.0.2",
		"mx2.sts.test. 300 IN A 127.0.0.3",
		`_mta-sts.sts.test. 300 IN TXT "v=STSv1; id=first;"`,
	)
	ps := startPolicyServer(t, e.zone, "sts.test")
	ps.set("sts.test", policy)
	return &stsEnv{env: e, ps: ps}
}

// transport trusts the test CA as its system roots.
func (e *stsEnv) transport(t *testing.T, c config.Delivery, o deliver.Options) *deliver.Transport {
	t.Helper()
	o.Config = c
	o.RootCAs = policyCA(t).pool
	return newTransport(t, o)
}

func wantInMessage(t *testing.T, r queue.Result, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(r.Message, p) {
			t.Errorf("reply %q lacks %q", r.Message, p)
		}
	}
}

// The first cases: enforce + a bad certificate defers, and nothing
// goes out in clear; a good one delivers.
func TestMTASTSEnforceCertificates(t *testing.T) {
	for _, tc := range []struct {
		kind certKind
		want queue.Status
		says string
	}{
		{goodCert, queue.Sent, ""},
		{expiredCert, queue.Deferred, "expired"},
		{wrongNameCert, queue.Deferred, "mx1.sts.test"},
		{selfSignedCert, queue.Deferred, "unknown authority"},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx1.sts.test"))
			mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(sinkCert(t, tc.kind, "mx1.sts.test"))})
			tr := e.transport(t, e.config(), deliver.Options{})
			result := map[queue.Status]string{queue.Sent: "sent", queue.Deferred: "deferred"}[tc.want]
			before := deliver.TLSPolicyCount("mta-sts", result)
			res := deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))
			wantStatus(t, res[0], tc.want)
			if n := deliver.TLSPolicyCount("mta-sts", result) - before; n != 1 {
				t.Errorf("inkan_delivery_tls_policy_total{policy=mta-sts,result=%s} went up by %v, want 1", result, n)
			}
			if !strings.Contains(res[0].TLSPolicy, "MTA-STS policy of sts.test (enforce, id first)") {
				t.Errorf("TLSPolicy %q does not name the policy", res[0].TLSPolicy)
			}
			if tc.want == queue.Sent {
				if m := mx.messages(); len(m) != 1 || !m[0].tls {
					t.Fatalf("sink got %+v, want one message over TLS", m)
				}
				return
			}
			wantInMessage(t, res[0], "MTA-STS policy of sts.test", tc.says)
			if mx.mails.Load() != 0 || len(mx.messages()) != 0 {
				t.Errorf("MAIL sent despite the certificate: %d commands", mx.mails.Load())
			}
		})
	}
}

func TestMTASTSEnforceWithoutSTARTTLS(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx1.sts.test"))
	mx := e.net.start(t, "127.0.0.2", sinkOpts{}) // no TLS at all
	tr := e.transport(t, e.config(), deliver.Options{})
	res := deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))
	wantStatus(t, res[0], queue.Deferred)
	wantInMessage(t, res[0], "does not offer STARTTLS", "MTA-STS policy of sts.test")
	if mx.mails.Load() != 0 {
		t.Errorf("mail sent in clear to an MTA-STS enforce domain")
	}
}

func TestMTASTSEnforceMXNotInPolicy(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx2.sts.test", "*.mail.sts.test"))
	mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(sinkCert(t, goodCert, "mx1.sts.test"))})
	tr := e.transport(t, e.config(), deliver.Options{})
	res := deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))
	wantStatus(t, res[0], queue.Deferred)
	wantInMessage(t, res[0], "does not list MX host mx1.sts.test", "mx2.sts.test, *.mail.sts.test")
	if mx.conns.Load() != 0 {
		t.Errorf("connected to an MX host the policy does not list")
	}
}

// Testing mode delivers as before and counts the failure for the report.
func TestMTASTSTestingDeliversAndCounts(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("testing", 86400, "mx1.sts.test"))
	mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(sinkCert(t, expiredCert, "mx1.sts.test"))})
	rep := newReports(t, nil)
	tr := e.transport(t, e.config(), deliver.Options{Reports: rep})
	res := deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))
	wantStatus(t, res[0], queue.Sent)
	if !strings.Contains(res[0].TLSPolicy, "(testing, id first)") {
		t.Errorf("TLSPolicy %q", res[0].TLSPolicy)
	}
	if m := mx.messages(); len(m) != 1 || !m[0].tls {
		t.Fatalf("sink got %+v, want one message over TLS", m)
	}
	r := decodeReport(t, rep.ReportJSON("sts.test"))
	p := r.policy(t, "sts")
	if p.Summary.Failure != 1 || p.Summary.Success != 0 || p.Failures[0].ResultType != "certificate-expired" ||
		p.Failures[0].MXHost != "mx1.sts.test" || p.Failures[0].ReceivingIP != "127.0.0.2" {
		t.Errorf("report policy %+v", p)
	}
	if got := strings.Join(p.Policy.Strings, "|"); got != "version: STSv1|mode: testing|mx: mx1.sts.test|max_age: 86400" {
		t.Errorf("policy-string %q", got)
	}
}

// The cache survives a restart, an unreachable policy server and a TXT
// record that disappears: the MX host the cached policy does not list is
// still refused.
func TestMTASTSCacheSurvivesRestart(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx1.sts.test"))
	e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(sinkCert(t, goodCert, "mx1.sts.test"))})
	evil := e.net.start(t, "127.0.0.4", sinkOpts{})
	dir := t.TempDir()
	tr := e.transport(t, e.config(), deliver.Options{DataDir: dir})
	wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Sent)
	tr.Close()
	if _, err := os.Stat(filepath.Join(dir, "mta-sts", "sts.test.json")); err != nil {
		t.Fatalf("policy not on disk: %v", err)
	}

	// An attacker now answers DNS: new MX, no TXT record, no policy server.
	e.ps.stop()
	e.zone.mu.Lock()
	delete(e.zone.rrs, "_mta-sts.sts.test.")
	delete(e.zone.rrs, "sts.test.")
	e.zone.mu.Unlock()
	e.zone.add(t, "sts.test. 300 IN MX 10 evil.attacker.test.", "evil.attacker.test. 300 IN A 127.0.0.4")
	hits := e.ps.hits.Load()

	tr2 := e.transport(t, e.config(), deliver.Options{DataDir: dir})
	res := deliverOne(t, tr2, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))
	wantStatus(t, res[0], queue.Deferred)
	wantInMessage(t, res[0], "MTA-STS policy of sts.test (enforce, id first) does not list MX host evil.attacker.test")
	if evil.conns.Load() != 0 {
		t.Error("the cached policy did not keep mail from the attacker's MX")
	}

	// A new id with the server unreachable: the cached policy still holds.
	e.zone.add(t, `_mta-sts.sts.test. 300 IN TXT "v=STSv1; id=second;"`)
	tr3 := e.transport(t, e.config(), deliver.Options{DataDir: dir})
	wantStatus(t, deliverOne(t, tr3, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Deferred)
	if e.ps.hits.Load() != hits {
		t.Errorf("policy server reached after it was stopped")
	}
}

// A new id fetches the new policy; the same id does not fetch again.
func TestMTASTSNewIDFetchesNewPolicy(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx2.sts.test"))
	e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(sinkCert(t, goodCert, "mx1.sts.test"))})
	tr := e.transport(t, e.config(), deliver.Options{})
	wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Deferred)
	wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Deferred)
	if n := e.ps.hits.Load(); n != 1 {
		t.Errorf("%d fetches for one policy id", n)
	}
	e.ps.set("sts.test", stsPolicy("enforce", 86400, "mx1.sts.test"))
	e.zone.mu.Lock()
	delete(e.zone.rrs, "_mta-sts.sts.test.")
	e.zone.mu.Unlock()
	e.zone.add(t, `_mta-sts.sts.test. 1 IN TXT "v=STSv1; id=second;"`)
	tr2 := e.transport(t, e.config(), deliver.Options{}) // a fresh DNS cache
	res := deliverOne(t, tr2, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))
	wantStatus(t, res[0], queue.Sent)
	if !strings.Contains(res[0].TLSPolicy, "id second") {
		t.Errorf("TLSPolicy %q", res[0].TLSPolicy)
	}
}

// Fetches that break the rules give no policy, and the failure is counted.
func TestMTASTSFetchRules(t *testing.T) {
	for _, tc := range []struct {
		name, body, ctype, kind string
	}{
		{"redirect", "REDIRECT https://elsewhere.test/policy", "", "sts-policy-fetch-error"},
		{"not text/plain", stsPolicy("enforce", 86400, "mx2.sts.test"), "text/html", "sts-policy-invalid"},
		{"too large", stsPolicy("enforce", 86400, "mx2.sts.test") + strings.Repeat("x: y\r\n", 12000), "", "sts-policy-invalid"},
		{"unparsable", "version: STSv1\nmode: sure\n", "", "sts-policy-invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSTSEnv(t, tc.body)
			e.ps.setType("sts.test", tc.ctype)
			mx := e.net.start(t, "127.0.0.2", sinkOpts{})
			rep := newReports(t, nil)
			tr := e.transport(t, e.config(), deliver.Options{Reports: rep})
			res := deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))
			wantStatus(t, res[0], queue.Sent) // no policy: delivered as before
			if len(mx.messages()) != 1 {
				t.Fatal("not delivered")
			}
			p := decodeReport(t, rep.ReportJSON("sts.test")).policy(t, "no-policy-found")
			if len(p.Failures) == 0 || p.Failures[0].ResultType != tc.kind {
				t.Errorf("report failures %+v, want %s", p.Failures, tc.kind)
			}
		})
	}
}

// An unreachable policy server with nothing cached means no policy.
func TestMTASTSUnreachableWithoutCache(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx2.sts.test"))
	e.ps.stop()
	e.net.start(t, "127.0.0.2", sinkOpts{})
	tr := e.transport(t, e.config(), deliver.Options{})
	wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Sent)
}

func TestMTASTSOptOut(t *testing.T) {
	off := false
	for name, mod := range map[string]func(*config.Delivery){
		"skip":            func(c *config.Delivery) { c.MTASTS.Skip = []string{".test"} },
		"disabled":        func(c *config.Delivery) { c.MTASTS.Enabled = &off },
		"tls_policy none": func(c *config.Delivery) { c.TLSPolicy = map[string]string{"sts.test": "none"} },
	} {
		t.Run(name, func(t *testing.T) {
			e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx2.sts.test"))
			mx := e.net.start(t, "127.0.0.2", sinkOpts{})
			c := e.config()
			mod(&c)
			tr := e.transport(t, c, deliver.Options{})
			wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Sent)
			if len(mx.messages()) != 1 || e.ps.hits.Load() != 0 {
				t.Errorf("%d messages, %d policy fetches", len(mx.messages()), e.ps.hits.Load())
			}
		})
	}
}

// tls_policy mta-sts requires a policy, and enforces one in testing mode.
func TestRequireMTASTS(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("testing", 86400, "mx2.sts.test"))
	e.zone.add(t, "plain.test. 300 IN MX 10 mx1.sts.test.")
	mx := e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(sinkCert(t, goodCert, "mx1.sts.test"))})
	c := e.config()
	c.TLSPolicy = map[string]string{".test": config.TLSModeMTASTS}
	tr := e.transport(t, c, deliver.Options{})
	res := deliverOne(t, tr, delivery("a@sender.test", "plain.test", testMessage, "bob@plain.test"))
	wantStatus(t, res[0], queue.Deferred)
	wantInMessage(t, res[0], "delivery.tls_policy..test requires MTA-STS for plain.test, which publishes no MTA-STS policy")
	res = deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))
	wantStatus(t, res[0], queue.Deferred)
	wantInMessage(t, res[0], "does not list MX host mx1.sts.test")
	if mx.conns.Load() != 0 {
		t.Error("connected although the required policy failed")
	}
}

// A refresh fetches the policy again (here: the server now says none) once
// half its max_age has passed.
func TestMTASTSRefresh(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx2.sts.test"))
	mx := e.net.start(t, "127.0.0.2", sinkOpts{})
	tr := e.transport(t, e.config(), deliver.Options{DataDir: t.TempDir()})
	wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Deferred)
	e.ps.set("sts.test", stsPolicy("none", 86400))
	tr.RefreshPolicies(context.Background())
	if e.ps.hits.Load() != 1 {
		t.Fatalf("refreshed a fresh policy: %d fetches", e.ps.hits.Load())
	}
	later := time.Now().Add(13 * time.Hour)
	t.Cleanup(deliver.SetNow(func() time.Time { return later }))
	tr.RefreshPolicies(context.Background())
	if e.ps.hits.Load() != 2 {
		t.Fatalf("%d fetches, want 2", e.ps.hits.Load())
	}
	wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Sent)
	if len(mx.messages()) != 1 {
		t.Error("mode none still enforced")
	}
}
