package main

import (
	"strings"

	"github.com/inkan-relay/inkan/relay/signing"
)

// backendName is backend, or "openssl" when RSA signatures go through
// OpenSSL (a build with the inkan_openssl tag, as deploy/build.sh makes
// where libssl-dev is installed).
func backendName(alg string) string {
	if alg != "ed25519" && strings.HasPrefix(signing.RSABackend(), "OpenSSL") {
		return "openssl"
	}
	return backend
}
