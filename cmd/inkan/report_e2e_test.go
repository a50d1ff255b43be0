package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportREADMEExample runs the built binary on the report the README
// shows and compares its output with the README's, byte for byte: the
// example stays what users get. A second, unreadable input is named on
// stderr and makes the status 1 while the good one is still reported.
func TestReportREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const cmdLine = "$ inkan report dmarc 'google.com!example.com!1761955200!1762041599.zip'\n"
	_, rest, ok := strings.Cut(string(readme), cmdLine)
	if !ok {
		t.Fatalf("README lacks %q", cmdLine)
	}
	want, _, _ := strings.Cut(rest, "```")
	dir, err := filepath.Abs("reportcmd/testdata/packed/dmarc")
	if err != nil {
		t.Fatal(err)
	}
	report := func(args ...string) (string, string, int) {
		cmd := exec.Command(binPath, append([]string{"report", "dmarc", "-keys", "example.com/ed1,example.com/rsa1"}, args...)...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "INKAN_CONFIG="}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	out, errs, code := report("google.com!example.com!1761955200!1762041599.zip")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if out != want {
		t.Errorf("output differs from the README's example.\ngot:\n%s\nREADME:\n%s", out, want)
	}
	bad := filepath.Join(t.TempDir(), "not-a-report.xml")
	os.WriteFile(bad, []byte("<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]><feedback/>"), 0o600)
	out2, errs, code := report("google.com!example.com!1761955200!1762041599.zip", bad)
	if code != 1 || !strings.Contains(errs, "not-a-report.xml") || !strings.Contains(out2, "1366 messages") {
		t.Errorf("with an unreadable input: exit %d, stderr %q, report given %v", code, errs, strings.Contains(out2, "1366 messages"))
	}
}
