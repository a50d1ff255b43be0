// Command signrate measures DKIM signing cost with the crypto backend it was
// built with. The bench harness (test/bench) builds it with the same
// toolchain settings as the inkan binary under test, so that "one RSA-2048
// signature" means what inkan pays for one: deploy/build.sh links
// BoringCrypto (GOEXPERIMENT=boringcrypto, CGO_ENABLED=1), and Go's
// crypto/rsa then signs through BoringSSL, which is not the pure-Go code a
// `go run` harness would time.
//
// It signs a SHA-256 digest (what a DKIM signer signs once per message per
// key) with -workers goroutines for about -d, and prints one line:
//
//	backend=boring alg=rsa2048 workers=1 signs=N wall_s=S cpu_s=S signs_per_s=R cpu_us_per_sign=U
//
// cpu_s is the process's user+system time (getrusage), so cpu_us_per_sign
// is the CPU one signature costs even when other processes share the cores;
// signs_per_s is the wall-clock rate.
package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/inkan-relay/inkan/relay/signing"
)

func main() {
	alg := flag.String("alg", "rsa2048", "rsa2048 or ed25519")
	workers := flag.Int("workers", 1, "signing goroutines")
	d := flag.Duration("d", 2*time.Second, "how long to sign")
	flag.Parse()
	if err := run(*alg, *workers, *d); err != nil {
		fmt.Fprintln(os.Stderr, "signrate:", err)
		os.Exit(1)
	}
}

func run(alg string, workers int, d time.Duration) error {
	var signer crypto.Signer
	var opts crypto.SignerOpts = crypto.SHA256
	switch alg {
	case "rsa2048":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return fmt.Errorf("generate rsa key: %w", err)
		}
		signer = k
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("generate ed25519 key: %w", err)
		}
		signer, opts = k, crypto.Hash(0)
	default:
		return fmt.Errorf("unknown algorithm %q", alg)
	}
	if workers < 1 {
		return fmt.Errorf("-workers must be at least 1")
	}
	signer = signing.FastSigner(signer) // what inkan signs with
	digest := sha256.Sum256([]byte("inkan-bench"))
	msg := digest[:]
	if alg == "ed25519" {
		msg = []byte("inkan-bench canonicalized header block")
	}
	// One signature first: key precomputation and backend setup are not
	// per-message costs.
	if _, err := signer.Sign(rand.Reader, msg, opts); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	var count atomic.Int64
	var firstErr atomic.Value
	cpu0 := cpuTime()
	t0 := time.Now()
	stop := t0.Add(d)
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
	wall := time.Since(t0)
	cpu := cpuTime() - cpu0
	if err, ok := firstErr.Load().(error); ok {
		return fmt.Errorf("sign: %w", err)
	}
	n := count.Load()
	if n == 0 {
		return fmt.Errorf("no signature in %s", d)
	}
	fmt.Printf("backend=%s alg=%s workers=%d signs=%d wall_s=%.3f cpu_s=%.3f signs_per_s=%.1f cpu_us_per_sign=%.1f\n",
		backendName(alg), alg, workers, n, wall.Seconds(), cpu.Seconds(), float64(n)/wall.Seconds(), float64(cpu.Microseconds())/float64(n))
	return nil
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
