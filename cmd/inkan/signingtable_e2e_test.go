package main_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// openDKIMTables writes an Ed25519 key, a KeyTable naming it "good" and a
// SigningTable signing example.com with it; it returns the YAML that points
// inkan at them and the SigningTable's path.
func openDKIMTables(t *testing.T) (yaml, signingTable string) {
	t.Helper()
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "ed.private")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	kt := filepath.Join(dir, "KeyTable")
	signingTable = filepath.Join(dir, "SigningTable")
	if err := os.WriteFile(kt, []byte("good example.com:ed:"+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(signingTable, []byte("*@example.com good\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "dkim:\n  key_table: " + kt + "\n  signing_table: refile:" + signingTable + "\n", signingTable
}

// breakSigningTable adds line 2, naming a key the KeyTable does not define.
func breakSigningTable(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("*@example.com good\n*@example.org typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// `inkan check` used to print a warning and exit 0, and serve sent that
// mail unsigned (docker-postfix #111, #234).
func TestCheckAndServeRefuseSigningTableWithUndefinedKey(t *testing.T) {
	yaml, st := openDKIMTables(t)
	breakSigningTable(t, st)
	cfg := writeConfig(t, t.TempDir(), yaml)
	out, err := exec.Command(binPath, "check", "-config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("check exited %v, want non-zero:\n%s", err, out)
	}
	for _, want := range []string{"error: " + st + ":2:", `names key "typo"`, "KeyTable", "(fix: "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	serveRefuses(t, cfg, st+":2", `"typo"`)
}

// A reload with such a table is refused and the running tables keep signing.
func TestReloadRefusesSigningTableWithUndefinedKey(t *testing.T) {
	s := startSink(t)
	yaml, st := openDKIMTables(t)
	in := startInkan(t, s.addr, yaml)
	breakSigningTable(t, st)
	in.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, in, "reload refused")
	if !strings.Contains(in.logs.String(), `names key \"typo\"`) && !strings.Contains(in.logs.String(), `names key "typo"`) {
		t.Errorf("the refusal does not name the key:\n%s", in.logs.String())
	}
	sendRaw(t, in.relay, "a@example.com", []string{"b@example.net"}, "From: a@example.com\r\nSubject: after reload\r\n\r\nhi\r\n")
	if got := s.wait(t, 1); !bytes.Contains(got[0].data, []byte("DKIM-Signature:")) || !bytes.Contains(got[0].data, []byte("s=ed;")) {
		t.Fatalf("mail after the refused reload is not signed with the old tables:\n%s", got[0].data)
	}
}
