package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// runSecrets checks that readable secret files are refused (or warned about)
// at start with a message naming the file and the chmod that fixes it, then
// makes a full run with users, a DKIM key and a smarthost password, and
// greps every log of the whole torture run for those secrets.
func runSecrets(h *harness) {
	keyPEM, keyDER, pubTXT, err := newDKIMKey()
	if err != nil {
		r := h.row("secrets/modes")
		r.failf("generate a DKIM key: %v", err)
		r.end()
		return
	}
	h.addSecret("DKIM private key (base64 DER)", base64.StdEncoding.EncodeToString(keyDER))
	for i, line := range pemBodyLines(keyPEM) {
		h.addSecret(fmt.Sprintf("DKIM private key (PEM line %d)", i+1), line)
	}
	if h.wants("secrets/modes") {
		r := h.row("secrets/modes")
		secretModes(h, r, keyPEM)
		r.end()
	}
	if h.wants("secrets/logs") {
		r := h.row("secrets/logs")
		secretRun(h, r, keyPEM, pubTXT)
		grepLogs(h, r)
		r.end()
	}
}

// newDKIMKey makes an RSA-2048 key: PKCS#8 PEM, its DER, and its DNS TXT.
func newDKIMKey() (pemBytes, der []byte, txt string, err error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, "", err
	}
	der, err = x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, nil, "", err
	}
	pemBytes = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return pemBytes, der, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub), nil
}

func pemBodyLines(p []byte) []string {
	var out []string
	for _, l := range strings.Split(string(p), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

// modeCase is a secret file with a mode, and what inkan should do.
type modeCase struct {
	what   string // "users file" or "DKIM key"
	mode   os.FileMode
	start  bool // inkan should start
	warn   bool // ... with a warning naming the file and the chmod fix
	reason string
}

var modeCases = []modeCase{
	{"users file", 0o600, true, false, "private"},
	{"users file", 0o640, true, false, "readable by inkan's own group: accepted (0640 root:inkan, a Kubernetes secret with fsGroup)"},
	{"users file", 0o644, false, false, "world-readable users file: refused"},
	{"DKIM key", 0o600, true, false, "private"},
	{"DKIM key", 0o640, true, true, "group-readable key: accepted with a warning (a dedicated group is a valid setup)"},
	{"DKIM key", 0o604, false, false, "world-readable key: refused"},
	{"DKIM key", 0o644, false, false, "world-readable key: refused"},
}

func secretModes(h *harness, r *result, keyPEM []byte) {
	for _, mc := range modeCases {
		r.Attempts++
		in, usersPath, keyPath, err := secretsInkan(h, fmt.Sprintf("modes-%s-%o", sanitize(mc.what), mc.mode), keyPEM, nil)
		if err != nil {
			r.failf("%v", err)
			continue
		}
		file := usersPath
		if mc.what == "DKIM key" {
			file = keyPath
		}
		if err := os.Chmod(file, mc.mode); err != nil {
			r.failf("chmod: %v", err)
			continue
		}
		started, out := in.tryStart()
		label := fmt.Sprintf("%s mode %04o", mc.what, mc.mode)
		// The fix keeps what may stay: 0640 for a users file of inkan's
		// group, 600 for a key.
		fix := "chmod 600 " + file
		if mc.what == "users file" {
			fix = fmt.Sprintf("chmod %04o %s", mc.mode&^0o027, file)
		}
		switch {
		case started != mc.start:
			r.failf("%s: started=%v, want %v (%s); output:\n%s", label, started, mc.start, mc.reason, indent(out))
		case !started && (!strings.Contains(out, file) || !strings.Contains(out, fix)):
			r.failf("%s refused, but the message does not name the file and %q:\n%s", label, fix, indent(out))
		case mc.warn && (!strings.Contains(out, file) || !strings.Contains(out, fix) || !strings.Contains(strings.ToLower(out), "warn")):
			r.failf("%s: started without a warning naming the file and %q:\n%s", label, fix, indent(out))
		case started && !mc.warn && strings.Contains(out, file+":"):
			r.failf("%s: unexpected warning about the file:\n%s", label, indent(out))
		}
		msg := "started"
		if !started {
			msg = "refused: " + logText(firstMatch(out, file), in.dir)
		} else if mc.warn {
			msg = "started, warning: " + logText(firstMatch(out, "group-accessible"), in.dir)
		}
		r.notef("%s (%s): %s", label, mc.reason, msg)
		in.stop(r)
	}
}

// secretsInkan prepares an inkan with a users file (one user) and a DKIM
// key for secrets.test, both mode 0600.
func secretsInkan(h *harness, name string, keyPEM []byte, mutate func(map[string]any)) (*inkan, string, string, error) {
	in, err := h.newInkan("secrets-"+name, mutate)
	if err != nil {
		return nil, "", "", err
	}
	usersPath := filepath.Join(in.dir, "users")
	keyPath := filepath.Join(in.dir, "dkim.pem")
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, "", "", err
	}
	set(in.cfg, "auth.users_file", usersPath)
	set(in.cfg, "dkim.keys", []any{map[string]any{"domain": "secrets.test", "selector": "s1", "key_file": keyPath}})
	if err := in.writeConfig(); err != nil {
		return nil, "", "", err
	}
	pw := "Mode-Pass-" + randomToken(10)
	h.addSecret("users-file test password", pw)
	if out, code := in.cliInput(pw+"\n", "user", "add", "mode@secrets.test"); code != 0 {
		return nil, "", "", fmt.Errorf("inkan user add: exit %d: %s", code, out)
	}
	return in, usersPath, keyPath, nil
}

// tryStart starts inkan when a refusal is a possible, expected outcome: it
// returns whether it became ready, and its output so far.
func (in *inkan) tryStart() (bool, string) {
	before, _ := os.ReadFile(in.logPath)
	err := in.start()
	in.mu.Lock()
	if err != nil {
		in.unexpected = nil // a refusal to start is the point here
	}
	in.mu.Unlock()
	after, _ := os.ReadFile(in.logPath)
	return err == nil, string(after[len(before):])
}

// secretRun is a full run that handles every secret: users log in (and
// fail to), mail is DKIM-signed and relayed through a smarthost that wants
// a password, a bounce is made, and the admin commands are used.
func secretRun(h *harness, r *result, keyPEM []byte, pubTXT string) {
	led := newLedger("secrets-" + randomToken(6))
	relayPass := "Relay-Pass-" + randomToken(14)
	inlinePass := "Inline-Pass-" + randomToken(14)
	h.addSecret("smarthost password", relayPass)
	h.addSecret("inline smarthost password", inlinePass)
	cert, err := selfSigned("smarthost.test")
	if err != nil {
		r.failf("%v", err)
		return
	}
	// A password goes only over checked TLS: the self-signed certificate
	// is pinned.
	sum := sha256.Sum256(cert.Certificate[0])
	pin := hex.EncodeToString(sum[:])
	sk, err := h.newSink("secrets-smarthost", cert, map[string]string{"relay@secrets.test": relayPass})
	if err != nil {
		r.failf("%v", err)
		return
	}
	sk.setBehavior(sinkBehavior{reject: map[string]bool{"nobody@elsewhere.test": true}})
	sk.subscribe(func(m sunk) {
		if m.from == "" {
			if d, err := parseDSN(m.data); err == nil {
				led.bounced(d)
			} else {
				r.failf("bounce does not parse: %v", err)
			}
			return
		}
		led.delivered(m.to, m.data)
	})
	in, _, _, err := secretsInkan(h, "run", keyPEM, func(cfg map[string]any) {
		set(cfg, "log.level", "debug")
	})
	if err != nil {
		r.failf("%v", err)
		return
	}
	pwFile := filepath.Join(in.dir, "smarthost.pw")
	if err := os.WriteFile(pwFile, []byte(relayPass+"\n"), 0o600); err != nil {
		r.failf("%v", err)
		return
	}
	set(in.cfg, "delivery.smarthost", map[string]any{"address": "[127.0.0.1]:" + portOf(sk.addr), "tls": "verify",
		"tls_fingerprint": pin, "username": "relay@secrets.test", "password_file": pwFile})
	if err := in.writeConfig(); err != nil {
		r.failf("%v", err)
		return
	}
	users := map[string]string{"alice@secrets.test": "Alice-Pass-" + randomToken(12), "bob@secrets.test": "Bob-Pass-" + randomToken(12)}
	for u, pw := range users {
		h.addSecret("password of "+u, pw)
		h.addSecret("AUTH PLAIN of "+u, plainResp(u, pw))
		h.addSecret("AUTH LOGIN password of "+u, base64.StdEncoding.EncodeToString([]byte(pw)))
		if out, code := in.cliInput(pw+"\n", "user", "add", u); code != 0 {
			r.failf("inkan user add %s: exit %d: %s", u, code, out)
			return
		}
	}
	if err := in.start(); err != nil {
		r.crashed("start: %v", err)
		return
	}
	secretTraffic(h, r, in, led, users)
	if _, err := in.waitQueueEmpty(30 * time.Second); err != nil {
		r.failf("queue did not drain: %v", err)
	}
	waitLedger(led, 10*time.Second)
	checkSignatures(r, sk, led, pubTXT)
	// The admin commands, whose output is logged too.
	for _, args := range [][]string{{"check", "-print"}, {"user", "list"}, {"queue", "list"}, {"dkim", "records"}, {"dkim", "explain"}} {
		if out, code := in.cli(args...); code != 0 && args[0] != "dkim" {
			r.failf("inkan %s: exit %d: %s", strings.Join(args, " "), code, out)
		}
	}
	in.stop(r)
	// A password written in the config itself must be hidden by check -print.
	set(in.cfg, "delivery.smarthost", map[string]any{"address": "[127.0.0.1]:" + portOf(sk.addr), "tls": "verify",
		"tls_fingerprint": pin, "username": "relay@secrets.test", "password": inlinePass})
	if err := in.writeConfig(); err != nil {
		r.failf("%v", err)
	} else if out, _ := in.cli("check", "-print"); !strings.Contains(out, "redacted") {
		r.failf("inkan check -print does not show the inline password as redacted:\n%s", indent(out))
	}
	t := led.tally()
	r.tally(t)
	if n := sk.authFailures(); n > 0 {
		r.failf("inkan failed AUTH at the smarthost %d times", n)
	}
}

// secretTraffic logs in right and wrong on both submission ports and sends.
func secretTraffic(h *harness, r *result, in *inkan, led *ledger, users map[string]string) {
	for i, l := range []listener{{"smtps", in.smtps, true, false}, {"submission+STARTTLS", in.sub, false, true}} {
		for u, pw := range users {
			wrong := pw + "x"
			h.addSecret("near-miss password of "+u, wrong)
			h.addSecret("AUTH PLAIN near miss of "+u, plainResp(u, wrong))
			for _, try := range []struct {
				pass string
				want int
			}{{wrong, 535}, {pw, 235}} {
				c, _, err := openAs(l, fmt.Sprintf("127.0.0.%d", 20+i))
				if err != nil {
					r.failf("%v", err)
					continue
				}
				c.deadline(30 * time.Second)
				var rep reply
				if i == 0 {
					rep, _ = c.cmd("AUTH PLAIN " + plainResp(u, try.pass))
				} else {
					c.cmd("AUTH LOGIN")
					c.cmd(base64.StdEncoding.EncodeToString([]byte(u)))
					rep, _ = c.cmd(base64.StdEncoding.EncodeToString([]byte(try.pass)))
				}
				if rep.code != try.want {
					r.failf("%s AUTH as %s: %s, want %d", l.name, u, rep, try.want)
				}
				if rep.code == 235 {
					to := []string{"friend@elsewhere.test"}
					if u == "bob@secrets.test" && i == 0 {
						to = append(to, "nobody@elsewhere.test") // bounced by the smarthost
					}
					m, body := led.compose(u, to, 2000, "")
					s := c.submit(u, to, body, nil)
					led.record(m, s)
					if s.out != outAcked {
						r.failf("submission by %s: %s", u, s.reply)
					}
				}
				c.close()
			}
		}
	}
}

// checkSignatures verifies the DKIM signature of every delivered copy with
// the public key, as a receiver would.
func checkSignatures(r *result, sk *sink, led *ledger, pubTXT string) {
	n := 0
	for _, m := range sk.messages() {
		if run, _, ok := parseTorture(m.data); !ok || run != led.run || m.from == "" {
			continue
		}
		if m.user != "relay@secrets.test" || !m.tls {
			r.failf("smarthost delivery without AUTH over TLS (user %q, TLS %v)", m.user, m.tls)
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.data), &dkim.VerifyOptions{
			LookupTXT: func(domain string) ([]string, error) {
				if domain == "s1._domainkey.secrets.test" {
					return []string{pubTXT}, nil
				}
				return nil, fmt.Errorf("no TXT for %s", domain)
			},
		})
		if err != nil || len(vs) == 0 {
			r.failf("DKIM verification: %v (%d signatures)", err, len(vs))
			continue
		}
		for _, v := range vs {
			if v.Err != nil || v.Domain != "secrets.test" {
				r.failf("DKIM signature d=%s: %v", v.Domain, v.Err)
			}
		}
		n++
	}
	r.notef("%d delivered messages, each with a DKIM signature (d=secrets.test) that verifies; relayed with AUTH over TLS", n)
}

// grepLogs looks for every registered secret in every log of the run.
func grepLogs(h *harness, r *result) {
	values, labels := h.secretList()
	files := h.allLogs()
	var size int64
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a log that was never written
		}
		size += int64(len(b))
		for i, v := range values {
			if len(v) >= 8 && bytes.Contains(b, []byte(v)) {
				found++
				r.failf("%s found in %s", labels[i], filepath.Base(f))
			}
		}
	}
	r.notef("grepped %d log files (%d kB, every inkan and CLI log of this run) for %d secrets (passwords, their AUTH base64 forms, the private key's DER and PEM lines): %d found",
		len(files), size/1024, len(values), found)
}

// logText keeps the message of a slog line (err= or warning=) and writes
// dir as $DIR.
func logText(line, dir string) string {
	for _, k := range []string{"err=", "warning="} {
		if i := strings.Index(line, k); i >= 0 {
			line = line[i+len(k):]
			break
		}
	}
	return strings.ReplaceAll(strings.Trim(line, `"`), dir, "$DIR")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// firstMatch is the first line of s containing sub (trimmed), or "".
func firstMatch(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			l = strings.TrimSpace(l)
			return l
		}
	}
	return ""
}
