//go:build !goexperiment.boringcrypto

package main

// cryptoBackend is what `inkan version` reports for a pure-Go build
// (`go build`, `go run`, or deploy/build.sh with CRYPTO=go).
const cryptoBackend = "Go standard library (pure Go)"
