package signing

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
)

func TestParsePrivateKeyFormats(t *testing.T) {
	rk := testRSA(t, 1)
	ek := testEd25519(t, 20)
	pkcs1 := x509.MarshalPKCS1PrivateKey(rk)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ek)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	ec8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	b64 := base64.StdEncoding.EncodeToString
	good := map[string][]byte{
		"pkcs1 pem":           pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs1}),
		"pkcs8 pem":           pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		"params then key":     append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...),
		"base64 der":          []byte(b64(pkcs1) + "\n"),
		"one-line pem":        []byte("-----BEGIN PRIVATE KEY-----" + b64(pkcs8) + "-----END PRIVATE KEY-----"),
		"raw der":             pkcs8,
		"ed25519 seed":        []byte(b64(ek.Seed())),
		"ed25519 seed+public": []byte(b64(ek)),
	}
	for name, data := range good {
		k, err := ParsePrivateKey(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if Algorithm(k.Public()) == "" {
			t.Errorf("%s: %T", name, k)
		}
	}
	bad := map[string][]byte{
		"encrypted pkcs1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: pkcs1}),
		"encrypted pkcs8": pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}),
		"ec":              pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}),
		"ec pkcs8":        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ec8}),
		"openssh":         pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte{1}}),
		"public key":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}),
		"garbage":         []byte("hello world"),
		"bad seed+public": []byte(b64(append(ek.Seed(), make([]byte, 32)...))),
		"weak rsa":        pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testRSA(t, -1))}),
	}
	for name, data := range bad {
		if k, err := ParsePrivateKey(data); err == nil {
			t.Errorf("%s: accepted %T", name, k)
		}
	}
	if _, err := ParsePrivateKey(bad["weak rsa"]); err == nil || !strings.Contains(err.Error(), "1024-bit RSA keys are refused") {
		t.Errorf("weak: %v", err)
	}
}

func TestPublicKeyRecord(t *testing.T) {
	ek := testEd25519(t, 21)
	rec, err := PublicKeyRecord(ek.Public())
	if err != nil || rec != "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey)) {
		t.Errorf("ed25519 record %q %v", rec, err)
	}
	if _, err := PublicKeyRecord("nope"); err == nil {
		t.Error("string accepted as a key")
	}
}
