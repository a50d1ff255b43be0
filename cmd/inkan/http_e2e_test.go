package main_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// /readyz answers whoever reaches listen.http (":8025" in the image): it
// says what is wrong in general words and keeps file system paths and
// error details for the log.
func TestReadyzHidesPathsFromCallers(t *testing.T) {
	s := startSink(t)
	in := startInkan(t, s.addr, "")
	q := filepath.Join(in.dir, "queue")
	if err := os.Rename(q, q+".away"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(q, []byte("not a directory"), 0o600)
	defer func() { os.Remove(q); os.Rename(q+".away", q) }()
	resp, err := http.Get("http://" + in.http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "spool") {
		t.Fatalf("readyz = %d %q, want 503 naming the spool", resp.StatusCode, body)
	}
	if strings.Contains(string(body), in.dir) || strings.Contains(string(body), "/") {
		t.Errorf("readyz shows a path to the caller: %q", body)
	}
	waitLog(t, in, filepath.Join(q, ".readyz-probe")) // the detail is in the log
}
