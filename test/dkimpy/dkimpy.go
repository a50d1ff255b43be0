// Package dkimpy verifies DKIM signatures with dkimpy (Debian's
// python3-dkim), an implementation independent of go-msgauth and of inkan's
// signer, for tests that must not take one implementation's word.
package dkimpy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Python is Debian's interpreter: python3-dkim is installed for it, not for
// another python3 on PATH.
const Python = "/usr/bin/python3"

// Result is dkimpy's verdict on one DKIM-Signature field, in header order.
type Result struct {
	Domain, Selector string
	Pass             bool
	Why              string // the failure, "" on a pass
}

// Available reports whether dkimpy can be used. Without it a test skips
// that verifier, except in CI (CI set), where it fails: .ci/install-deps.sh
// installs it.
func Available(t testing.TB) bool {
	t.Helper()
	if exec.Command(Python, "-c", "import dkim").Run() == nil {
		return true
	}
	if os.Getenv("CI") != "" {
		t.Fatal("dkimpy (python3-dkim) is required in CI (.ci/install-deps.sh installs it)")
	}
	t.Log("dkimpy (python3-dkim) not installed: that verifier is skipped")
	return false
}

const script = `
import sys, json, dkim
from dkim.util import parse_tag_value
recs = json.loads(sys.argv[1])
def dns(name, timeout=5):
    return recs.get(name.decode().rstrip("."), "").encode() or None
for path in sys.argv[2:]:
    msg = open(path, "rb").read()
    headers, _ = dkim.rfc822_parse(msg)
    out = []
    for idx, (k, v) in enumerate([h for h in headers if h[0].lower() == b"dkim-signature"]):
        try:
            tags = parse_tag_value(v)
        except Exception:
            tags = {}
        r = {"Domain": tags.get(b"d", b"").decode(), "Selector": tags.get(b"s", b"").decode()}
        try:
            r["Pass"] = bool(dkim.DKIM(msg).verify(idx=idx, dnsfunc=dns))
            r["Why"] = "" if r["Pass"] else "fail"
        except Exception as e:
            r["Pass"], r["Why"] = False, repr(e)
        out.append(r)
    print(json.dumps(out))
`

// Verify has dkimpy check every DKIM-Signature of each file, with the TXT
// records given (name without trailing dot -> value), in one process, and
// returns the results per file.
func Verify(records map[string]string, files []string) ([][]Result, error) {
	recs, err := json.Marshal(records)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(Python, append([]string{"-c", script, string(recs)}, files...)...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return nil, fmt.Errorf("dkimpy: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(files) {
		return nil, fmt.Errorf("dkimpy printed %d lines for %d files:\n%s", len(lines), len(files), out)
	}
	res := make([][]Result, len(files))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &res[i]); err != nil {
			return nil, fmt.Errorf("dkimpy output %q: %v", l, err)
		}
	}
	return res, nil
}
