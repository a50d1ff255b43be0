package deliver_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// clientCertFiles makes a CA and a client certificate it signs for cn,
// writes the certificate and key as PEM files, and returns them with a pool
// that trusts the CA.
func clientCertFiles(t *testing.T, cn string) (certFile, keyFile string, cas *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test connector CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cas = x509.NewCertPool()
	cas.AddCert(ca)
	return certFile, keyFile, cas
}

// A relay that knows its senders by their certificate (a Microsoft 365
// certificate-based connector) gets inkan's client certificate; without
// it the handshake fails and the mail waits. A client certificate, like a
// password, is only presented where the relay's certificate is checked.
func TestClientCertificate(t *testing.T) {
	t.Parallel()
	certFile, keyFile, cas := clientCertFiles(t, "connector.sender.test")
	e := newEnv(t)
	srv := serverTLS(t)
	srv.ClientAuth, srv.ClientCAs = tls.RequireAndVerifyClientCert, cas
	s := e.net.start(t, "127.0.0.4", sinkOpts{tls: srv})
	_, roots := selfSigned(t)
	relay := config.Smarthost{Address: "[127.0.0.4]:" + strconv.Itoa(e.net.port), ClientCertFile: certFile, ClientKeyFile: keyFile}

	c := e.config()
	c.Smarthost = &relay
	tr := newTransport(t, deliver.Options{Config: c, RootCAs: roots})
	if got := tr.Route("a@sender.test", "x.test").TLS; got != "verify" {
		t.Errorf("a relay with a client certificate defaults to tls %s, want verify", got)
	}
	res := deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "bob@x.test"))
	wantStatus(t, res[0], queue.Sent)
	if m := s.messages(); len(m) != 1 || m[0].cn != "connector.sender.test" {
		t.Fatalf("the relay saw %+v, want one message from connector.sender.test", m)
	}

	without := relay
	without.ClientCertFile, without.ClientKeyFile = "", ""
	without.TLS = "verify"
	c.Smarthost = &without
	tr = newTransport(t, deliver.Options{Config: c, RootCAs: roots})
	res = deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "bob@x.test"))
	wantStatus(t, res[0], queue.Deferred)

	unchecked := relay
	unchecked.TLS = "encrypt"
	c.Smarthost = &unchecked
	if _, err := deliver.New(deliver.Options{Config: c, Hostname: "relay.inkan.test"}); err == nil ||
		!strings.Contains(err.Error(), "delivery.smarthost.tls") {
		t.Errorf("a client certificate over unchecked TLS was accepted: %v", err)
	}

	broken := relay
	broken.ClientKeyFile = certFile
	c.Smarthost = &broken
	if _, err := deliver.New(deliver.Options{Config: c, Hostname: "relay.inkan.test"}); err == nil ||
		!strings.Contains(err.Error(), "delivery.smarthost.client_cert_file") {
		t.Errorf("an unusable client key was accepted: %v", err)
	}
}
