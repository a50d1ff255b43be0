package deliver

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// clientCert is a relay's client certificate (client_cert_file and
// client_key_file), read again when either file changes, so that a renewed
// certificate is used without a reload.
type clientCert struct {
	certFile, keyFile string

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp [2]time.Time
}

func loadClientCert(certFile, keyFile string) (*clientCert, error) {
	c := &clientCert{certFile: certFile, keyFile: keyFile}
	if _, err := c.get(); err != nil {
		return nil, err
	}
	return c, nil
}

// get returns the certificate, reading the files again if they changed; a
// file that cannot be read keeps the certificate read before.
func (c *clientCert) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var stamp [2]time.Time
	for i, f := range []string{c.certFile, c.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			stamp[i] = fi.ModTime()
		}
	}
	if c.cert != nil && stamp == c.stamp {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil
		}
		return nil, fmt.Errorf("cannot load the client certificate %s with key %s: %v", c.certFile, c.keyFile, err)
	}
	c.cert, c.stamp = &cert, stamp
	return c.cert, nil
}

// present is tls.Config.GetClientCertificate: the certificate is sent
// whatever CAs the server says it accepts (Microsoft 365 connectors match
// the certificate's name, not its issuer).
func (c *clientCert) present(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.get()
}
