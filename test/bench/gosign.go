package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// signRate measures Go's crypto signing throughput in this process: workers
// goroutines sign a SHA-256 digest for about d, as a DKIM signer does once per
// message. It is the ceiling a Go relay that signs every message can reach on
// this machine right now, which is why it is measured in the same run.
func signRate(alg string, workers int, d time.Duration) (float64, error) {
	var signer crypto.Signer
	var opts crypto.SignerOpts = crypto.SHA256
	switch alg {
	case "rsa2048":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return 0, fmt.Errorf("generate rsa key: %w", err)
		}
		signer = k
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return 0, fmt.Errorf("generate ed25519 key: %w", err)
		}
		signer, opts = k, crypto.Hash(0)
	default:
		return 0, fmt.Errorf("unknown algorithm %q", alg)
	}
	digest := sha256.Sum256([]byte("inkan-bench"))
	msg := digest[:]
	var count atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(d)
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := signer.Sign(rand.Reader, msg, opts); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, fmt.Errorf("sign: %w", err)
	}
	return float64(count.Load()) / time.Since(t0).Seconds(), nil
}
