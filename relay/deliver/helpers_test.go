package deliver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
	"github.com/inkan-relay/inkan/relay/dnsutil/dnstest"
)

// ---- DNS ----

// zone is a tiny recursive-resolver stand-in: it answers from its records,
// following CNAMEs itself like a real resolver would.
type zone struct {
	mu      sync.Mutex
	rrs     map[string][]dns.RR // by lower-case FQDN
	rcode   map[string]int      // forced answer code by name
	noChase bool                // answer CNAMEs without their targets' records
	queries atomic.Int64
}

// startDNS serves z on 127.0.0.1 (UDP and TCP on the same port).
func startDNS(t testing.TB) (*zone, string) {
	t.Helper()
	z := &zone{rrs: map[string][]dns.RR{}, rcode: map[string]int{}}
	return z, dnstest.Serve(t, z)
}

// add adds records in zone-file syntax: "mx.test. 300 IN MX 10 mx1.mx.test.".
func (z *zone) add(t testing.TB, records ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad record %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		z.rrs[name] = append(z.rrs[name], rr)
	}
}

func (z *zone) fail(name string, rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rcode[dns.Fqdn(strings.ToLower(name))] = rcode
}

func (z *zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	z.queries.Add(1)
	z.mu.Lock()
	defer z.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if rc, ok := z.rcode[name]; ok {
		m.Rcode = rc
		w.WriteMsg(m)
		return
	}
	for range 8 {
		rrs, ok := z.rrs[name]
		if !ok {
			if name == strings.ToLower(q.Name) || len(m.Answer) > 0 {
				m.Rcode = dns.RcodeNameError
			}
			break
		}
		next := ""
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			} else if c, ok := rr.(*dns.CNAME); ok {
				m.Answer = append(m.Answer, rr)
				next = strings.ToLower(c.Target)
			}
		}
		if next == "" || z.noChase {
			break
		}
		name = next
	}
	w.WriteMsg(m)
}

// ---- SMTP sinks ----

type sinkOpts struct {
	tls       *tls.Config // offer STARTTLS with this config
	implicit  bool        // TLS from the first byte (needs tls)
	user      string      // require AUTH with user/pass
	pass      string
	loginOnly bool                       // offer AUTH LOGIN only
	rcpt      map[string]*smtp.SMTPError // replies to RCPT by address
	dataErr   *smtp.SMTPError            // reply to the end of DATA
	dropData  bool                       // close the connection in the middle of DATA
	maxSize   int64
	noUTF8    bool          // do not offer SMTPUTF8
	greeting  string        // a raw reply line: greet with it, then hang up
	dataHook  chan struct{} // closed when DATA starts; then Data waits for release
	release   chan struct{}
	// bearer makes the sink accept only XOAUTH2 and OAUTHBEARER with a
	// token it approves (oauth_test.go); mechs are those offered (default
	// both).
	bearer func(user, token string) bool
	mechs  []string
}

type received struct {
	from string
	to   []string
	data []byte
	tls  bool
	user string
	size int64
	utf8 bool
	cn   string // the client certificate's common name, if one was presented
}

type sink struct {
	addr  string
	opts  sinkOpts
	conns atomic.Int64 // connections accepted
	mails atomic.Int64 // MAIL commands
	auths atomic.Int64 // AUTH attempts: each one received the password
	fails atomic.Int64 // AUTH attempts refused

	mu   sync.Mutex
	msgs []received
	open []net.Conn
}

func (s *sink) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

// hangUp closes the server side of every connection, like an idle timeout.
func (s *sink) hangUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.open {
		c.Close()
	}
	s.open = nil
}

// sinkNet is a set of sinks on 127.0.0.x sharing one port.
type sinkNet struct {
	port int
}

// newSinkNet picks a port that is free on 127.0.0.2 to 127.0.0.9.
func newSinkNet(t testing.TB) *sinkNet {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		free := true
		for i := 3; i <= 9 && free; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, port))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return &sinkNet{port: port}
		}
	}
	t.Fatal("no port free on 127.0.0.2-9")
	return nil
}

// start runs a sink on ip:port until the test ends.
func (n *sinkNet) start(t testing.TB, ip string, o sinkOpts) *sink {
	t.Helper()
	s := &sink{addr: net.JoinHostPort(ip, strconv.Itoa(n.port)), opts: o}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	ln = &trackListener{Listener: ln, s: s}
	var wg sync.WaitGroup
	if o.greeting != "" {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(c, o.greeting+"\r\n")
				c.Close()
			}
		})
		t.Cleanup(func() { ln.Close(); wg.Wait() })
		return s
	}
	srv := smtp.NewServer(&sinkBackend{s: s})
	srv.Domain = "sink.test"
	srv.TLSConfig = o.tls
	srv.MaxMessageBytes = o.maxSize
	srv.EnableSMTPUTF8 = !o.noUTF8
	srv.ErrorLog = discardLogger{}
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	if o.implicit {
		ln = tls.NewListener(ln, o.tls)
		srv.TLSConfig = nil
	}
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() {
		srv.Close()
		ln.Close() // Close misses a listener Serve has not picked up yet
		wg.Wait()
	})
	return s
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

type trackListener struct {
	net.Listener
	s *sink
}

func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.conns.Add(1)
		l.s.mu.Lock()
		l.s.open = append(l.s.open, c)
		l.s.mu.Unlock()
	}
	return c, err
}

type sinkBackend struct{ s *sink }

func (b *sinkBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &sinkSession{s: b.s, conn: c}, nil
}

type sinkSession struct {
	s    *sink
	conn *smtp.Conn
	from string
	to   []string
	user string
	size int64
	utf8 bool
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, o *smtp.MailOptions) error {
	ss.s.mails.Add(1)
	if (ss.s.opts.user != "" || ss.s.opts.bearer != nil) && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from, ss.size, ss.utf8 = from, o.Size, o.UTF8
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e := ss.s.opts.rcpt[to]; e != nil {
		return e
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	o := ss.s.opts
	if o.dropData {
		io.CopyN(io.Discard, r, 10)
		ss.conn.Conn().Close()
		return errors.New("dropped")
	}
	if o.dataHook != nil {
		close(o.dataHook)
		<-o.release
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	cs, isTLS := ss.conn.TLSConnectionState()
	cn := ""
	if isTLS && len(cs.PeerCertificates) > 0 {
		cn = cs.PeerCertificates[0].Subject.CommonName
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, received{from: ss.from, to: ss.to, data: b, tls: isTLS, user: ss.user, size: ss.size, utf8: ss.utf8, cn: cn})
	ss.s.mu.Unlock()
	if o.dataErr != nil {
		return o.dataErr
	}
	return nil
}

func (ss *sinkSession) AuthMechanisms() []string {
	switch {
	case ss.s.opts.bearer != nil && ss.s.opts.mechs != nil:
		return ss.s.opts.mechs
	case ss.s.opts.bearer != nil:
		return []string{"XOAUTH2", sasl.OAuthBearer}
	case ss.s.opts.user == "":
		return nil
	case ss.s.opts.loginOnly:
		return []string{"LOGIN"}
	}
	return []string{"PLAIN"}
}

var errBadLogin = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	if ss.s.opts.bearer != nil {
		return ss.bearerServer(mech)
	}
	check := func(user, pass string) error {
		ss.s.auths.Add(1)
		if user != ss.s.opts.user || pass != ss.s.opts.pass {
			return errBadLogin
		}
		ss.user = user
		return nil
	}
	if mech == "LOGIN" {
		return &loginServer{check: check}, nil
	}
	return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
}

// loginServer is the server side of AUTH LOGIN (go-sasl only has a client).
type loginServer struct {
	check func(user, pass string) error
	user  []byte
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch {
	case l.step == 1 && resp == nil:
		return []byte("Username:"), false, nil
	case l.user == nil:
		l.user = resp
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(string(l.user), string(resp))
}

// ---- certificates ----

var (
	certOnce sync.Once
	testCert tls.Certificate
	testPool *x509.CertPool
)

// selfSigned returns a certificate for the test host names and 127.0.0.x,
// and a pool that trusts it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "inkan test"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
			DNSNames:              []string{"mx1.verify.test", "smtp.relay.test"},
		}
		for i := 2; i <= 9; i++ {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, byte(i)))
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
		testPool = x509.NewCertPool()
		testPool.AddCert(leaf)
	})
	return testCert, testPool
}

func serverTLS(t testing.TB) *tls.Config {
	t.Helper()
	cert, _ := selfSigned(t)
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// ---- transport ----

type env struct {
	zone *zone
	dns  string
	net  *sinkNet
}

func newEnv(t testing.TB) *env {
	t.Helper()
	z, addr := startDNS(t)
	return &env{zone: z, dns: addr, net: newSinkNet(t)}
}

// config returns delivery settings using the test DNS and sink port.
func (e *env) config() config.Delivery {
	return config.Delivery{
		TLS:            "may",
		MXPort:         e.net.port,
		Resolver:       e.dns,
		ConnectTimeout: config.Duration(5 * time.Second),
		CommandTimeout: config.Duration(10 * time.Second),
		DataTimeout:    config.Duration(10 * time.Second),
	}
}

func newTransport(t testing.TB, o deliver.Options) *deliver.Transport {
	t.Helper()
	if o.Hostname == "" {
		o.Hostname = "relay.inkan.test"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tr, err := deliver.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

const testMessage = "From: alice@sender.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\n" +
	"Hello.\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n"

func delivery(from, domain string, msg string, rcpts ...string) *queue.Delivery {
	return &queue.Delivery{
		ID: "TESTID", From: from, Rcpts: rcpts, Domain: domain, Size: int64(len(msg)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(msg)), nil },
	}
}

func deliverOne(t *testing.T, tr *deliver.Transport, d *queue.Delivery) []queue.Result {
	t.Helper()
	res := tr.Deliver(context.Background(), d)
	if len(res) != len(d.Rcpts) {
		t.Fatalf("got %d results for %d recipients: %+v", len(res), len(d.Rcpts), res)
	}
	for i, r := range res {
		if r.Rcpt != d.Rcpts[i] {
			t.Fatalf("result %d is for %q, want %q", i, r.Rcpt, d.Rcpts[i])
		}
	}
	return res
}

func wantStatus(t *testing.T, r queue.Result, st queue.Status) {
	t.Helper()
	if r.Status != st {
		t.Fatalf("%s: status %v, want %v (%d %s %s, remote %s)", r.Rcpt, r.Status, st, r.Code, r.Enhanced, r.Message, r.Remote)
	}
}

func remote(host, ip string, port int) string {
	return fmt.Sprintf("%s[%s]:%d", host, ip, port)
}

func equalBytes(a []byte, b string) bool { return bytes.Equal(a, []byte(b)) }
