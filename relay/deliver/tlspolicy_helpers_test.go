package deliver_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/relay/deliver"
	"github.com/inkan-relay/inkan/relay/dnsutil/dnstest"
)

// ---- a test CA and the certificates MX sinks present ----

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

var (
	caOnce sync.Once
	theCA  *testCA
)

// policyCA is the CA the tests trust as "the system roots".
func policyCA(t testing.TB) *testCA {
	t.Helper()
	caOnce.Do(func() {
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(100),
			Subject:               pkix.Name{CommonName: "inkan test CA"},
			NotBefore:             time.Now().Add(-48 * time.Hour),
			NotAfter:              time.Now().Add(48 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		cert, _ := x509.ParseCertificate(der)
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		theCA = &testCA{cert: cert, key: key, pool: pool}
	})
	return theCA
}

func newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return key
}

var serial atomic.Int64

// issue makes a certificate for names, valid from notBefore to notAfter,
// signed by the CA (or by itself when selfSigned).
func (ca *testCA) issue(t testing.TB, names []string, notBefore, notAfter time.Time, selfSigned bool) tls.Certificate {
	t.Helper()
	key := newKey()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	parent, signer := ca.cert, ca.key
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	chain := [][]byte{der}
	if !selfSigned {
		chain = append(chain, ca.cert.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
}

// certKind names the certificates an MX sink may present.
type certKind int

const (
	goodCert certKind = iota
	expiredCert
	wrongNameCert
	selfSignedCert
)

func (k certKind) String() string {
	return [...]string{"good", "expired", "wrong-name", "self-signed"}[k]
}

// sinkCert is a certificate of kind k for host.
func sinkCert(t testing.TB, k certKind, host string) tls.Certificate {
	t.Helper()
	ca := policyCA(t)
	from, to := time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	switch k {
	case expiredCert:
		return ca.issue(t, []string{host}, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), false)
	case wrongNameCert:
		return ca.issue(t, []string{"wrong.example"}, from, to, false)
	case selfSignedCert:
		return ca.issue(t, []string{host}, from, to, true)
	}
	return ca.issue(t, []string{host}, from, to, false)
}

func tlsWith(c tls.Certificate) *tls.Config { return &tls.Config{Certificates: []tls.Certificate{c}} }

// tlsa is the TLSA record data "usage selector 1 sha256(SPKI)" of cert, or
// of the CA for usage 2 with selector 0 (full certificate).
func tlsaRecord(usage int, c *x509.Certificate) string {
	if usage == 2 {
		sum := sha256.Sum256(c.Raw)
		return fmt.Sprintf("2 0 1 %s", hex.EncodeToString(sum[:]))
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("%d 1 1 %s", usage, hex.EncodeToString(sum[:]))
}

// ---- DNSSEC: a resolver stand-in that sets the AD bit ----

// signedZone answers like a validating resolver: names under a signed apex
// get the AD bit (unless under an unsigned one), others do not; bogus
// names get SERVFAIL, as a validating resolver answers them.
type signedZone struct {
	*zone
	mu       sync.Mutex
	signed   []string
	unsigned []string
}

func startSignedDNS(t testing.TB) (*signedZone, string) {
	t.Helper()
	z := &signedZone{zone: &zone{rrs: map[string][]dns.RR{}, rcode: map[string]int{}}}
	srv := dnstest.Serve(t, z)
	return z, srv
}

// sign marks apex and its subdomains as DNSSEC-signed; unsign exempts a subtree.
func (z *signedZone) sign(apex string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.signed = append(z.signed, dns.Fqdn(strings.ToLower(apex)))
}

func (z *signedZone) unsign(apex string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.unsigned = append(z.unsigned, dns.Fqdn(strings.ToLower(apex)))
}

// bogus makes name fail validation: SERVFAIL.
func (z *signedZone) bogus(name string) { z.fail(name, dns.RcodeServerFailure) }

func under(name, apex string) bool { return name == apex || strings.HasSuffix(name, "."+apex) }

func (z *signedZone) secure(name string) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	best, ok := 0, false
	for _, a := range z.signed {
		if under(name, a) && len(a) > best {
			best, ok = len(a), true
		}
	}
	for _, a := range z.unsigned {
		if under(name, a) && len(a) >= best {
			return false
		}
	}
	return ok
}

func (z *signedZone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	z.zone.ServeDNS(&adWriter{ResponseWriter: w, ad: z.secure(strings.ToLower(r.Question[0].Name))}, r)
}

type adWriter struct {
	dns.ResponseWriter
	ad bool
}

func (w *adWriter) WriteMsg(m *dns.Msg) error {
	m.AuthenticatedData = w.ad && m.Rcode != dns.RcodeServerFailure
	return w.ResponseWriter.WriteMsg(m)
}

// ---- MTA-STS policy servers ----

// policyServer serves mta-sts.txt for several domains over HTTPS on
// 127.0.0.1, with a certificate from the test CA for their mta-sts names.
type policyServer struct {
	srv   *httptest.Server
	port  string
	mu    sync.Mutex
	body  map[string]string // by domain
	ctype map[string]string
	hits  atomic.Int64
}

// startPolicyServer serves the given domains; MTA-STS fetches are pointed at
// its port until the test ends. Tests using it must not be parallel.
func startPolicyServer(t *testing.T, z *zone, domains ...string) *policyServer {
	t.Helper()
	names := make([]string, len(domains))
	for i, d := range domains {
		names[i] = "mta-sts." + d
		z.add(t, "mta-sts."+d+". 300 IN A 127.0.0.1")
	}
	ps := &policyServer{body: map[string]string{}, ctype: map[string]string{}}
	ps.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.hits.Add(1)
		domain := strings.TrimPrefix(r.Host, "mta-sts.")
		if h, _, err := net.SplitHostPort(domain); err == nil {
			domain = h
		}
		ps.mu.Lock()
		body, ok := ps.body[domain]
		ctype := ps.ctype[domain]
		ps.mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" || !ok {
			http.NotFound(w, r)
			return
		}
		if strings.HasPrefix(body, "REDIRECT ") {
			http.Redirect(w, r, strings.TrimPrefix(body, "REDIRECT "), http.StatusFound)
			return
		}
		if ctype == "" {
			ctype = "text/plain; charset=utf-8"
		}
		w.Header().Set("Content-Type", ctype)
		fmt.Fprint(w, body)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ps.srv.Listener = ln
	cert := policyCA(t).issue(t, names, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	ps.srv.TLS = tlsWith(cert)
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	ps.port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	t.Cleanup(deliver.SetSTSPort(ps.port))
	return ps
}

func (ps *policyServer) set(domain, body string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.body[domain] = body
}

func (ps *policyServer) setType(domain, ctype string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.ctype[domain] = ctype
}

// stop makes the policy server unreachable.
func (ps *policyServer) stop() { ps.srv.Close() }

func stsPolicy(mode string, maxAge int, mx ...string) string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\nmode: " + mode + "\r\n")
	for _, m := range mx {
		b.WriteString("mx: " + m + "\r\n")
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", maxAge)
	return b.String()
}
