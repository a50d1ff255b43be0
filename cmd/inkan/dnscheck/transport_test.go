package dnscheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// servePolicy serves body as https://mta-sts.example.com/.well-known/mta-sts.txt
// on 127.0.0.1 with a certificate for name from a CA the check trusts.
func servePolicy(t *testing.T, name, ctype, body string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, ca, ca, &key.PublicKey, key)
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, _ := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, key)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Write([]byte(body))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	oldPort, oldRoots := stsPort, stsRoots
	stsPort, stsRoots = strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port), pool
	t.Cleanup(func() { stsPort, stsRoots = oldPort, oldRoots })
}

func TestCheckMTASTS(t *testing.T) {
	base := []string{
		"example.com. 300 IN MX 10 mx1.example.com.",
		"mx1.example.com. 300 IN A 192.0.2.1",
		"mta-sts.example.com. 300 IN A 127.0.0.1",
	}
	good := "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n"
	for _, tc := range []struct {
		name, txt, cert, ctype, body string
		status                       Status
		says                         string
	}{
		{"good", `"v=STSv1; id=1"`, "mta-sts.example.com", "text/plain", good, Pass, "mode enforce"},
		{"bad record", `"v=STSv1; id=not-alnum"`, "mta-sts.example.com", "text/plain", good, Fail, "letters and digits"},
		{"wrong certificate", `"v=STSv1; id=1"`, "www.example.com", "text/plain", good, Fail, "certificate is not valid for mta-sts.example.com"},
		{"html", `"v=STSv1; id=1"`, "mta-sts.example.com", "text/html", good, Fail, "serve it as text/plain"},
		{"broken policy", `"v=STSv1; id=1"`, "mta-sts.example.com", "text/plain", "mode: enforce\n", Fail, "no version line"},
		{"MX not listed", `"v=STSv1; id=1"`, "mta-sts.example.com", "text/plain", strings.Replace(good, "mx1.", "mx9.", 1), Fail, "MX host mx1.example.com is not in the policy"},
		{"testing", `"v=STSv1; id=1"`, "mta-sts.example.com", "text/plain", strings.Replace(good, "enforce", "testing", 1), Warn, "mode testing"},
		{"short max_age", `"v=STSv1; id=1"`, "mta-sts.example.com", "text/plain", strings.Replace(good, "604800", "3600", 1), Warn, "max_age 3600 is short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servePolicy(t, tc.cert, tc.ctype, tc.body)
			c, _ := startDNS(t, append(base, "_mta-sts.example.com. 300 IN TXT "+tc.txt))
			f, ok := c.CheckMTASTS(context.Background(), "example.com")
			if !ok || f.Status != tc.status || !strings.Contains(f.Detail, tc.says) {
				t.Errorf("got %v %v, want %v with %q", ok, f, tc.status, tc.says)
			}
		})
	}
	c, _ := startDNS(t, base)
	if f, ok := c.CheckMTASTS(context.Background(), "example.com"); ok {
		t.Errorf("no record published, yet: %v", f)
	}
}

func TestCheckTLSRPT(t *testing.T) {
	c, _ := startDNS(t, []string{`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"`,
		`_smtp._tls.bad.example. 300 IN TXT "v=TLSRPTv1; rua=ftp://x.example/"`})
	if f, ok := c.CheckTLSRPT(context.Background(), "example.com"); !ok || f.Status != Pass || !strings.Contains(f.Detail, "mailto:tlsrpt@example.com") {
		t.Errorf("good record: %v %v", ok, f)
	}
	if f, ok := c.CheckTLSRPT(context.Background(), "bad.example"); !ok || f.Status != Fail || f.Publish == "" {
		t.Errorf("bad record: %v %v", ok, f)
	}
	if f, ok := c.CheckTLSRPT(context.Background(), "none.example"); ok {
		t.Errorf("no record, yet: %v", f)
	}
}
