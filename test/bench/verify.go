package main

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed verify_sigs.py
var verifySigsPy []byte

// check is the verdict on what one system delivered to the sink.
type check struct {
	files      int // dump files of the measured smtp-source run
	wantFiles  int
	seqOK      int // distinct X-Bench-Seq values seen exactly once (client run)
	seqDup     int
	seqMissing int
	sampled    int
	sharedPass int // dkim_verify.py PASS lines
	allPass    int // files whose every expected signature verified (verify_sigs.py)
	signed     bool
	problems   []string
}

func (c *check) ok() bool { return len(c.problems) == 0 }

func (c *check) String() string {
	sigs := "unsigned system, signatures not checked"
	if c.signed {
		sigs = fmt.Sprintf("signatures: %d/%d sampled pass dkim_verify.py, %d/%d pass every expected signature", c.sharedPass, c.sampled, c.allPass, c.sampled)
	}
	s := fmt.Sprintf("smtp-source run: %d/%d files; client run: %d seqs once, %d duplicated, %d missing; %s",
		c.files, c.wantFiles, c.seqOK, c.seqDup, c.seqMissing, sigs)
	if len(c.problems) > 0 {
		s += "; PROBLEMS: " + strings.Join(c.problems, "; ")
	}
	return s
}

func (c *check) problem(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

var seqRE = regexp.MustCompile(`(?m)^X-Bench-Seq: (\S+)/(\d+)\s*$`)

// countSeqs reads every file in dir and counts each X-Bench-Seq number of tag.
func countSeqs(dir, tag string) (map[int]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read dump dir: %w", err)
	}
	seen := make(map[int]int, len(ents))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read dump file: %w", err)
		}
		for _, m := range seqRE.FindAllSubmatch(b, -1) {
			if string(m[1]) != tag {
				continue
			}
			if n, err := strconv.Atoi(string(m[2])); err == nil {
				seen[n]++
			}
		}
	}
	return seen, nil
}

// checkSeqs fills the exactly-once figures for a client run of n messages.
func (c *check) checkSeqs(seen map[int]int, n int) {
	for i := 1; i <= n; i++ {
		switch seen[i] {
		case 0:
			c.seqMissing++
		case 1:
			c.seqOK++
		default:
			c.seqDup++
		}
	}
	if c.seqMissing > 0 || c.seqDup > 0 {
		c.problem("client run: %d missing, %d duplicated of %d", c.seqMissing, c.seqDup, n)
	}
}

// sample picks up to k files spread evenly over dirs (sorted names).
func sample(k int, dirs ...string) []string {
	var all []string
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			all = append(all, filepath.Join(d, e.Name()))
		}
	}
	sort.Strings(all)
	if k <= 0 || k >= len(all) {
		return all
	}
	out := make([]string, 0, k)
	for i := 0; i < k; i++ {
		out = append(out, all[i*len(all)/k])
	}
	return out
}

// wantCanon is the canonicalization every signing system is run with (inkan's
// default; OpenDKIM and rspamd are configured so).
const wantCanon = "relaxed/relaxed"

// verifySignatures runs the shared dkim_verify.py and verify_sigs.py on files
// and checks that each carries exactly the expected algorithms, all valid
// and all relaxed/relaxed.
func (c *check) verifySignatures(ctx context.Context, sharedVerify, ownVerify, dnsMap string, files []string, want []string) {
	c.sampled = len(files)
	if len(files) == 0 {
		c.problem("no files to verify")
		return
	}
	if len(want) == 0 {
		return // unsigned system: nothing to verify
	}
	c.signed = true
	out, _ := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{sharedVerify, dnsMap}, files...)...).CombinedOutput()
	c.sharedPass = strings.Count(string(out), "PASS ")
	if c.sharedPass != len(files) {
		c.problem("dkim_verify.py: %d of %d pass (first failure: %s)", c.sharedPass, len(files), firstMatch(string(out), "FAIL "))
	}
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{ownVerify, dnsMap}, files...)...).Output()
	if err != nil && len(out) == 0 {
		c.problem("verify_sigs.py: %v", err)
		return
	}
	wantKey := strings.Join(sortedCopy(want), ",")
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	var firstBad string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		var algs []string
		good := true
		for _, s := range f[2:] {
			// ALG:D:S:CANON:pass; every system signs relaxed/relaxed.
			p := strings.Split(s, ":")
			if len(p) != 5 || p[4] != "pass" || p[3] != wantCanon {
				good = false
			}
			algs = append(algs, p[0])
		}
		if good && strings.Join(sortedCopy(algs), ",") == wantKey {
			c.allPass++
		} else if firstBad == "" {
			firstBad = sc.Text()
		}
	}
	if c.allPass != len(files) {
		c.problem("%d of %d files carry valid %s %s signatures (first other: %s)", c.allPass, len(files), wantCanon, wantKey, firstBad)
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func firstMatch(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// verifyTimeout bounds the Python checks (dkimpy verifies a few hundred
// messages a second).
func verifyTimeout(files int) time.Duration {
	return time.Minute + time.Duration(files)*50*time.Millisecond
}
