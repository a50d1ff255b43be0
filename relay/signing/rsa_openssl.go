//go:build cgo && inkan_openssl

package signing

// RSA signing through OpenSSL's libcrypto, linked statically by
// deploy/build.sh where the target's libcrypto.a is present. The RSA
// private-key operation is most of the CPU a signed message costs, and
// OpenSSL's assembly does it in 0.40 ms where BoringCrypto takes 0.68 and
// pure Go 0.95 (RSA-2048 on the 2-core benchmark machine; BENCHMARKS.md).
// OpenSSL blinds the operation and checks the CRT result before returning it,
// as Go does. Only PKCS #1 v1.5 signatures (what DKIM's rsa-sha256 is) take
// this path; anything else goes to the Go key.

/*
#cgo LDFLAGS: -lcrypto -ldl -lpthread
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

static EVP_PKEY *inkan_load_der(const unsigned char *der, long n) {
	// The host's openssl.cnf is not inkan's: it could ask this static
	// binary to load provider modules it cannot dlopen.
	OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
	const unsigned char *p = der;
	return d2i_AutoPrivateKey(NULL, &p, n);
}

// inkan_sign_pkcs1 signs a digest made by md (1: SHA-1, else SHA-256).
static int inkan_sign_pkcs1(EVP_PKEY *k, int md, const unsigned char *dg, size_t dglen, unsigned char *sig, size_t *siglen) {
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
	if (c == NULL) return 0;
	int ok = EVP_PKEY_sign_init(c) > 0 &&
		EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) > 0 &&
		EVP_PKEY_CTX_set_signature_md(c, md == 1 ? EVP_sha1() : EVP_sha256()) > 0 &&
		EVP_PKEY_sign(c, sig, siglen, dg, dglen) > 0;
	EVP_PKEY_CTX_free(c);
	return ok;
}

static const char *inkan_openssl_version(void) { return OpenSSL_version(OPENSSL_VERSION); }
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"io"
	"runtime"
	"unsafe"
)

// RSABackend names the RSA signing code in this build, for `inkan version`
// (test/bench reads its "OpenSSL" prefix).
func RSABackend() string {
	return C.GoString(C.inkan_openssl_version()) + " libcrypto (static, cgo)"
}

type opensslRSA struct {
	goKey *rsa.PrivateKey // Public, and any signature OpenSSL is not used for
	pkey  *C.EVP_PKEY
}

// FastSigner returns the signer inkan signs with for s: an OpenSSL-backed
// one for an RSA key, or s itself (other key types, or a key OpenSSL does
// not take or signs differently).
func FastSigner(s crypto.Signer) crypto.Signer {
	k, ok := s.(*rsa.PrivateKey)
	if !ok {
		return s
	}
	der := x509.MarshalPKCS1PrivateKey(k)
	cder := C.CBytes(der)
	clear(der)
	pkey := C.inkan_load_der((*C.uchar)(cder), C.long(len(der)))
	C.memset(cder, 0, C.size_t(len(der)))
	C.free(cder)
	if pkey == nil {
		return s
	}
	o := &opensslRSA{goKey: k, pkey: pkey}
	runtime.AddCleanup(o, func(p *C.EVP_PKEY) { C.EVP_PKEY_free(p) }, pkey)
	// A signature that Go does not verify is never used: keep Go's key.
	d := sha256.Sum256([]byte("inkan OpenSSL self-test"))
	sig, err := o.Sign(nil, d[:], crypto.SHA256)
	if err != nil || rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, d[:], sig) != nil {
		return s
	}
	return o
}

func (o *opensslRSA) Public() crypto.PublicKey { return &o.goKey.PublicKey }

func (o *opensslRSA) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	md := C.int(0)
	switch {
	case isPSS(opts):
		return o.goKey.Sign(rand, digest, opts)
	case opts.HashFunc() == crypto.SHA256 && len(digest) == sha256.Size:
	case opts.HashFunc() == crypto.SHA1 && len(digest) == 20:
		md = 1
	default:
		return o.goKey.Sign(rand, digest, opts)
	}
	sig := make([]byte, o.goKey.Size())
	n := C.size_t(len(sig))
	ok := C.inkan_sign_pkcs1(o.pkey, md, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), &n)
	runtime.KeepAlive(o)
	if ok == 0 || int(n) != len(sig) {
		return nil, errors.New("OpenSSL RSA signature failed")
	}
	return sig, nil
}

func isPSS(opts crypto.SignerOpts) bool {
	_, ok := opts.(*rsa.PSSOptions)
	return ok
}
