package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPrintAndExplainShowOrigin (issue 23): on a host whose name is
// not qualified, with one signing domain, "inkan check -print" says the
// origin domain is that domain and why, with the sender maps in the order
// they are tried, and "inkan dkim explain root" shows root completed and
// signed as root@example.com.
func TestCheckPrintAndExplainShowOrigin(t *testing.T) {
	dir := t.TempDir()
	env := operatorEnv(t, "INKAN_CONFIG=")
	if r := runInkan(t, env, "dkim", "keygen", "-d", "example.com", "-s", "s1", "-a", "ed25519", "-o", dir); r.code != 0 {
		t.Fatalf("keygen: %+v", r)
	}
	cfg := filepath.Join(dir, "inkan.yaml")
	os.WriteFile(cfg, []byte("hostname: web01\ndata_dir: "+dir+"/data\n"+
		"dkim:\n  keys:\n    - {domain: example.com, selector: s1, key_file: "+dir+"/example.com.s1.key}\n"+
		"rewrite:\n  senders:\n    - {match: \"root@\", replace: \"alerts@example.com\", scope: envelope}\n"), 0o600)
	r := runInkan(t, env, "check", "-print", "-config", cfg)
	for _, want := range []string{
		"# rewrite: origin domain: example.com (rewrite.origin_domain unset: the only DKIM signing domain)",
		"# rewrite: sender map for every trusted network: rewrite.senders[0] root@ -> alerts@example.com (envelope)",
	} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("check -print lacks %q: %+v", want, r)
		}
	}
	r = runInkan(t, env, "dkim", "explain", "-config", cfg, "root")
	for _, want := range []string{
		"MAIL FROM: root -> root@example.com (origin domain example.com",
		"MAIL FROM: root@example.com -> alerts@example.com (rewrite.senders[0] root@ -> alerts@example.com)",
		"From: root -> root@example.com",
		"root@example.com then signs as:\n  sign d=example.com s=s1",
	} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("dkim explain root lacks %q: %+v", want, r)
		}
	}
}
