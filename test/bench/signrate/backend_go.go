//go:build !goexperiment.boringcrypto

package main

// backend names the crypto the signatures ran on: Go's own.
const backend = "go"
