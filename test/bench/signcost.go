package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The per-signature cost the targets subtract must come from the crypto the
// inkan binary signs with. deploy/build.sh links BoringCrypto; a signing loop
// inside this `go run` harness would time pure Go (about 1.4x slower here),
// and `openssl speed` times OpenSSL's own assembly (about 2x faster than
// BoringCrypto through Go). So the harness builds ./test/bench/signrate with
// the build settings of the binary's backend and runs it: the same crypto/rsa
// call inkan's signer makes, on the same backend.

// signBackend is how the binary under test does its crypto.
type signBackend struct {
	name     string // "openssl", "boring" or "go"
	versionS string // the binary's `version` output, one line
}

// backendOf reads the crypto lines of `inkan version` (cmd/inkan prints
// "crypto: BoringCrypto (...)" or "crypto: Go standard library (pure Go)",
// then "DKIM RSA signing: OpenSSL ..." in a build that signs RSA with
// OpenSSL), in its output or in inkanVersion's one-line form ("...; crypto:
// ...").
func backendOf(versionOut string) string {
	if strings.Contains(versionOut, "DKIM RSA signing: OpenSSL") {
		return "openssl"
	}
	for _, l := range strings.FieldsFunc(versionOut, func(r rune) bool { return r == '\n' || r == ';' }) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "crypto:"); ok {
			if strings.Contains(v, "BoringCrypto") {
				return "boring"
			}
			return "go"
		}
	}
	return "" // an older binary that does not say
}

// buildSignRate builds the helper at out for backend, with deploy/build.sh's
// settings for it (boring: cgo, static, netgo/osusergo; go: CGO off).
func buildSignRate(repo, out, backend string) error {
	return buildLike(repo, out, "./test/bench/signrate", backend, "the signing-cost helper")
}

// buildLike builds pkg at out as deploy/build.sh builds inkan for backend,
// but with symbols (no -s -w): for the helper, and for the binary the
// profile run uses, whose perf report needs symbols the shipped (stripped)
// binary lacks.
func buildLike(repo, out, pkg, backend, what string) error {
	args := []string{"build", "-trimpath", "-o", out}
	switch backend {
	case "boring":
		args = append(args, "-tags", "netgo,osusergo", "-ldflags", "-linkmode external -extldflags -static")
	case "openssl":
		args = append(args, "-tags", "netgo,osusergo,inkan_openssl", "-ldflags", "-linkmode external -extldflags -static")
	}
	args = append(args, pkg)
	logf("building %s: %s go %s", what, strings.Join(backendEnv(backend), " "), strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env = repo, append(os.Environ(), backendEnv(backend)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s (%s): %w\n%s", pkg, backend, err, b)
	}
	return nil
}

func backendEnv(backend string) []string {
	if backend == "boring" || backend == "openssl" {
		return []string{"CGO_ENABLED=1", "GOEXPERIMENT=boringcrypto"}
	}
	return []string{"CGO_ENABLED=0"}
}

// signRate is one helper measurement.
type signRate struct {
	backend      string
	alg          string
	workers      int
	perSec       float64 // wall-clock signatures per second
	cpuUsPerSign float64 // CPU (user+sys) per signature
}

// signCost is the measurements of one moment (before or after the runs).
type signCost struct {
	rsa1, rsa2, ed1 signRate
}

// measureSignCost runs the helper: RSA-2048 with 1 and 2 goroutines, Ed25519
// with 1.
func measureSignCost(helper string) (signCost, error) {
	var c signCost
	var err error
	if c.rsa1, err = runSignRate(helper, "rsa2048", 1, 2*time.Second); err != nil {
		return c, err
	}
	if c.rsa2, err = runSignRate(helper, "rsa2048", 2, 2*time.Second); err != nil {
		return c, err
	}
	c.ed1, err = runSignRate(helper, "ed25519", 1, time.Second)
	return c, err
}

func runSignRate(helper, alg string, workers int, d time.Duration) (signRate, error) {
	out, err := runCmd(time.Minute, "", helper, "-alg", alg, "-workers", strconv.Itoa(workers), "-d", d.String())
	if err != nil {
		return signRate{}, err
	}
	return parseSignRate(out)
}

// parseSignRate reads the helper's "key=value ..." line.
func parseSignRate(out string) (signRate, error) {
	kv := map[string]string{}
	for _, f := range strings.Fields(out) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	r := signRate{backend: kv["backend"], alg: kv["alg"]}
	var err1, err2, err3 error
	r.workers, err1 = strconv.Atoi(kv["workers"])
	r.perSec, err2 = strconv.ParseFloat(kv["signs_per_s"], 64)
	r.cpuUsPerSign, err3 = strconv.ParseFloat(kv["cpu_us_per_sign"], 64)
	if err1 != nil || err2 != nil || err3 != nil || r.backend == "" || r.perSec <= 0 || r.cpuUsPerSign <= 0 {
		return r, fmt.Errorf("signrate: unexpected output %q", strings.TrimSpace(out))
	}
	return r, nil
}

// setupSignCost builds the helper for the binary's backend and takes the
// first measurement.
func (b *bench) setupSignCost() error {
	backend := backendOf(b.version)
	if backend == "" {
		logf("WARNING %s does not name its crypto backend (`version` has no crypto: line); timing pure-Go signatures", b.bin)
		backend = "go"
	}
	if b.opt.repo == "" {
		return fmt.Errorf("the signing-cost helper is built from the repository: use -repo")
	}
	helper := filepath.Join(b.opt.work, "bin", "signrate-"+backend)
	if err := buildSignRate(b.opt.repo, helper, backend); err != nil {
		return err
	}
	b.signHelper = helper
	var err error
	if b.signPre, err = measureSignCost(helper); err != nil {
		return err
	}
	if b.signPre.rsa1.backend != backend {
		return fmt.Errorf("signing-cost helper reports backend %q, built for %q", b.signPre.rsa1.backend, backend)
	}
	logf("signing cost (%s, helper %s): RSA-2048 %.0f µs CPU/signature, %.0f/s on 1 goroutine, %.0f/s on 2; Ed25519 %.0f µs CPU/signature",
		backend, helper, b.signPre.rsa1.cpuUsPerSign, b.signPre.rsa1.perSec, b.signPre.rsa2.perSec, b.signPre.ed1.cpuUsPerSign)
	return nil
}

// rsaSignMs is the RSA-2048 CPU per signature the target subtracts: the lower
// of the two measurements (the harder bar on a machine that was busier at one
// end of the benchmark). edSignMs likewise for Ed25519.
func (b *bench) rsaSignMs() float64 {
	return lowestPositive(b.signPre.rsa1.cpuUsPerSign, b.signPost.rsa1.cpuUsPerSign) / 1000
}

func (b *bench) edSignMs() float64 {
	return lowestPositive(b.signPre.ed1.cpuUsPerSign, b.signPost.ed1.cpuUsPerSign) / 1000
}

// rsaRate2 is the higher 2-goroutine RSA-2048 rate of the two measurements.
func (b *bench) rsaRate2() float64 { return max(b.signPre.rsa2.perSec, b.signPost.rsa2.perSec) }

func lowestPositive(a, b float64) float64 {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}
