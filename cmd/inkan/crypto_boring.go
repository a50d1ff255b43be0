//go:build goexperiment.boringcrypto

package main

// cryptoBackend is what `inkan version` reports: deploy/build.sh links
// BoringCrypto (the BoringSSL FIPS 140 module, through cgo) for the speed of
// its RSA signatures.
const cryptoBackend = "BoringCrypto (BoringSSL FIPS module, cgo, static)"
