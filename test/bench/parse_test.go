package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// comm with spaces and a ')' must not shift the fields.
	in := "1234 (post fix) x) S 77 1 1 0 -1 4194560 100 0 0 0 250 30 7 9 20 0 1 0 100 1000 200\n"
	st, err := parseStat([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 77 || st.utime != 250 || st.stime != 30 || st.cutime != 7 || st.cstime != 9 {
		t.Fatalf("got %+v", st)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 2 3"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getppid() {
		t.Fatalf("ppid %d, want %d", st.ppid, os.Getppid())
	}
	v, err := statusKB(os.Getpid(), "VmRSS", "VmHWM")
	if err != nil || v["VmRSS"] <= 0 || v["VmHWM"] < v["VmRSS"] {
		t.Fatalf("status: %v %v", v, err)
	}
}

func TestParseKBFields(t *testing.T) {
	got := parseKBFields([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\nPss: 12 kB\nbroken\n"), "VmRSS", "Pss", "Missing")
	if got["VmRSS"] != 1024 || got["Pss"] != 12 || len(got) != 2 {
		t.Fatalf("got %v", got)
	}
}

func TestLastMesg(t *testing.T) {
	cases := map[string]int{
		"":      -1,
		"123\r": -1,
		"sess=2 quit=2 mesg=2\rsess=3 quit=3 mesg=3\r": 3,
		"mesg=999999999999999999999999":                -1,
		"esg=5 mesg=17":                                17,
	}
	for in, want := range cases {
		if got := lastMesg([]byte(in)); got != want {
			t.Errorf("lastMesg(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestTCPTableListens(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:09E6 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:2943 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
`
	if !tcpTableListens([]byte(table), 2534) {
		t.Error("127.0.0.1:2534 listens")
	}
	if tcpTableListens([]byte(table), 10563) {
		t.Error("established socket is not a listener")
	}
	if !tcpTableListens([]byte(table), 8080) {
		t.Error("0.0.0.0:8080 listens on loopback too")
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(d, 0.5); p != 50*time.Millisecond {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(d, 0.99); p != 99*time.Millisecond {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(d[:1], 0.99); p != time.Millisecond {
		t.Errorf("p99 of one = %v", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Errorf("empty = %v", p)
	}
}

func TestBenchMessage(t *testing.T) {
	m := benchMessage("inkan-rsa-r1-x", 42, 4096)
	if n := len(m); n < 4096 || n > 4096+400 {
		t.Errorf("size %d, want about 4096 plus headers", n)
	}
	sm := seqRE.FindAllSubmatch(m, -1)
	if len(sm) != 1 || string(sm[0][1]) != "inkan-rsa-r1-x" || string(sm[0][2]) != "42" {
		t.Fatalf("seq header: %q", sm)
	}
	for _, l := range strings.Split(string(m), "\r\n") {
		if len(l) > 998 || strings.Contains(l, "\n") {
			t.Fatalf("bad line %q", l)
		}
	}
}

func TestCheckSeqs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, tag string, seq int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), benchMessage(tag, seq, 200), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "t", 1)
	write("b", "t", 2)
	write("c", "t", 2)
	write("d", "other", 3)
	seen, err := countSeqs(dir, "t")
	if err != nil {
		t.Fatal(err)
	}
	var c check
	c.checkSeqs(seen, 3)
	if c.seqOK != 1 || c.seqDup != 1 || c.seqMissing != 1 || c.ok() {
		t.Fatalf("got %+v", c)
	}
}

func TestSample(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 10; i++ {
		if err := os.WriteFile(filepath.Join(dir, string(rune('a'+i))), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := sample(0, dir); len(got) != 10 {
		t.Errorf("all: %d", len(got))
	}
	got := sample(3, dir)
	if len(got) != 3 || filepath.Base(got[0]) != "a" {
		t.Errorf("sample(3) = %v", got)
	}
}

func TestBindTXT(t *testing.T) {
	in := "s1._domainkey\tIN\tTXT\t( \"v=DKIM1; h=sha256; k=rsa; \"\n\t  \"p=MIIB\"\n\t  \"IjAN\" )  ; ----- DKIM key s1\n"
	got, err := bindTXT([]byte(in))
	if err != nil || got != "v=DKIM1; h=sha256; k=rsa; p=MIIBIjAN" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := bindTXT([]byte("nothing")); err == nil {
		t.Error("no error for a file without quotes")
	}
}

func TestDKIMRecord(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "k.key")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := dkimRecord(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub); rec != want {
		t.Fatalf("got %q, want %q", rec, want)
	}
}

func TestParsePerfAndGroups(t *testing.T) {
	flat := `# Samples: 10K of event 'cpu-clock'
#
    40.10%  [.] crypto/internal/fips140/bigmod.addMulVVW2048
    10.00%  [.] crypto/sha256.block
     8.00%  [k] ext4_sync_file
     5.00%  [k] tcp_sendmsg
     4.00%  [.] runtime.mallocgc
     3.00%  [.] runtime.futex
     2.00%  [k] do_syscall_64
     1.00%  [.] github.com/inkan-relay/inkan/queue.(*Spool).Commit
     6.00%  [.] _goboringcrypto_bn_sqr8x_internal
`
	lines := parsePerf(flat)
	if len(lines) != 9 || lines[0].pct != 40.10 || lines[2].sym != "ext4_sync_file" || !lines[2].kernel {
		t.Fatalf("parsed %+v", lines)
	}
	g := groupProfile(lines)
	want := map[string]float64{
		"RSA signing (bigmod/rsa; BoringSSL bn/rsa)": 46.1,
		"SHA-256 hashing":                     10,
		"kernel: disk, fsync, ext4/jbd2":      8,
		"kernel: TCP over loopback":           5,
		"Go GC and allocation":                4,
		"Go scheduler and other runtime":      3,
		"kernel: syscalls, scheduling, other": 2,
		"inkan code":                          1,
	}
	if len(g) != len(want) {
		t.Fatalf("groups %+v", g)
	}
	for _, s := range g {
		if want[s.name] != s.pct {
			t.Errorf("%s = %.2f, want %.2f", s.name, s.pct, want[s.name])
		}
	}
	children := parsePerf("    55.00%     0.00%  [.] runtime.goexit\n")
	if len(children) != 1 || children[0].pct != 55 || children[0].sym != "runtime.goexit" {
		t.Fatalf("children %+v", children)
	}
}

func TestParsePprofTop(t *testing.T) {
	txt := `File: inkan
Type: cpu
Showing nodes accounting for 5.20s, 80.00% of 6.50s total
      flat  flat%   sum%        cum   cum%
     1.20s 18.46% 18.46%      1.30s 20.00%  crypto/internal/fips140/bigmod.addMulVVW1024
     980ms 15.08% 33.54%      4.10s 63.08%  github.com/emersion/go-smtp.(*Conn).handle
`
	flat := parsePprofTop(txt, false)
	cum := parsePprofTop(txt, true)
	if len(flat) != 2 || flat[0].pct != 18.46 || flat[1].sym != "github.com/emersion/go-smtp.(*Conn).handle" {
		t.Fatalf("flat %+v", flat)
	}
	if cum[1].pct != 63.08 {
		t.Fatalf("cum %+v", cum)
	}
}

func TestRegistryLIFO(t *testing.T) {
	var r registry
	var order []string
	r.add("a", func() { order = append(order, "a") })
	id := r.add("b", func() { order = append(order, "b") })
	r.add("c", func() { order = append(order, "c") })
	r.run(id)
	r.run(id) // at most once
	r.stopAll()
	r.stopAll()
	if strings.Join(order, "") != "bca" {
		t.Fatalf("order %v", order)
	}
}

func TestParseFlagsQuick(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-n", "700", "-systems", "inkan-rsa, postfix"})
	if err != nil {
		t.Fatal(err)
	}
	if o.n != 700 || o.warmup != 100 || o.profile || o.idleConns != 200 || len(o.systems) != 2 {
		t.Fatalf("got %+v", o)
	}
	if _, err := parseFlags([]string{"-systems", "exim"}); err == nil {
		t.Error("unknown system accepted")
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (a b) S 2 1 1 0 -1 0 0 0 0 0 5 6 7 8 20 0 1 0 1 1 1\n"))
	f.Add([]byte("1 ((x)) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Must never panic, whatever the kernel (or a fuzzer) writes.
		_, _ = parseStat(b)
	})
}

func FuzzLastMesg(f *testing.F) {
	f.Add([]byte("sess=1 quit=1 mesg=1\r"))
	f.Add([]byte("mesg=mesg=4"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := lastMesg(b); n < -1 {
			t.Fatalf("lastMesg = %d", n)
		}
	})
}

func FuzzParsePerf(f *testing.F) {
	f.Add("    40.10%  [.] crypto/internal/fips140/bigmod.addMulVVW2048\n")
	f.Add("    55.00%     0.00%  [k] entry_SYSCALL_64\n#\n")
	f.Fuzz(func(t *testing.T, s string) {
		lines := parsePerf(s)
		for i := 1; i < len(lines); i++ {
			if lines[i].pct > lines[i-1].pct {
				t.Fatal("not sorted")
			}
		}
		_ = groupProfile(lines)
	})
}
