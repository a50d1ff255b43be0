//go:build cgo && inkan_openssl

package signing

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"testing"
)

// PKCS #1 v1.5 signatures are deterministic, so OpenSSL's must be Go's byte
// for byte: a differential check of the whole path (key transfer, padding,
// digest info) for the hashes DKIM uses. PSS and other hashes go to Go.
func TestOpenSSLSignsLikeGo(t *testing.T) {
	for _, bits := range []int{1024, 2048, 3072} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		s := FastSigner(k)
		if _, ok := s.(*opensslRSA); !ok {
			t.Fatalf("%d bits: FastSigner gave %T, want the OpenSSL signer", bits, s)
		}
		if s.Public().(*rsa.PublicKey).N.Cmp(k.N) != 0 {
			t.Fatal("public key differs")
		}
		for i := range 20 {
			msg := []byte{byte(i), byte(bits)}
			d256 := sha256.Sum256(msg)
			d1 := sha1.Sum(msg)
			for _, c := range []struct {
				h crypto.Hash
				d []byte
			}{{crypto.SHA256, d256[:]}, {crypto.SHA1, d1[:]}} {
				want, _ := k.Sign(rand.Reader, c.d, c.h)
				got, err := s.Sign(rand.Reader, c.d, c.h)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(want) {
					t.Fatalf("%d bits %v: OpenSSL's signature differs from Go's", bits, c.h)
				}
			}
		}
		d := sha256.Sum256([]byte("pss"))
		sig, err := s.Sign(rand.Reader, d[:], &rsa.PSSOptions{Hash: crypto.SHA256})
		if err != nil || rsa.VerifyPSS(&k.PublicKey, crypto.SHA256, d[:], sig, nil) != nil {
			t.Fatalf("PSS through the Go key: %v", err)
		}
	}
	if RSABackend() == "" {
		t.Fatal("no backend name")
	}
}

func BenchmarkOpenSSLSign(b *testing.B) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	s := FastSigner(k)
	d := sha256.Sum256([]byte("x"))
	for b.Loop() {
		s.Sign(rand.Reader, d[:], crypto.SHA256)
	}
}
