//go:build !(cgo && inkan_openssl)

package signing

import "crypto"

// RSABackend names the RSA signing code in this build, for `inkan version`:
// the Go crypto library this binary was built with (see deploy/build.sh for
// the OpenSSL build).
func RSABackend() string { return "the Go crypto library above" }

// FastSigner returns the signer inkan signs with for s: s itself, as this
// build signs RSA with Go's crypto.
func FastSigner(s crypto.Signer) crypto.Signer { return s }
