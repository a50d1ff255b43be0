//go:build goexperiment.boringcrypto

package main

import "crypto/boring"

// backend names the crypto the signatures ran on; boring.Enabled is false
// when the BoringCrypto build fell back to Go (e.g. an unsupported
// platform).
var backend = map[bool]string{true: "boring", false: "boring-disabled"}[boring.Enabled()]
