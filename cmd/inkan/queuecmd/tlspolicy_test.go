package queuecmd_test

import (
	"context"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/queue"
)

// stsDefer defers every recipient the way delivery does when an MTA-STS
// policy refuses the MX host's certificate.
type stsDefer struct{ deferAll }

const stsPolicy = "MTA-STS policy of example.org (enforce, id 20240101)"

func (d *stsDefer) Deliver(ctx context.Context, dl *queue.Delivery) []queue.Result {
	res := d.deferAll.Deliver(ctx, dl)
	for i := range res {
		res[i].Code, res[i].Enhanced = 0, "4.7.5"
		res[i].Message = "TLS handshake with mx.example.org[192.0.2.5]:25 failed: " + stsPolicy + ": the certificate of mx.example.org is not valid for it: x509: certificate has expired"
		res[i].TLSPolicy = stsPolicy
	}
	return res
}

// inkan queue show says which TLS policy applied and why the message waits.
func TestShowNamesTLSPolicy(t *testing.T) {
	dir := t.TempDir()
	tr := &stsDefer{}
	q := startServer(t, dir, tr)
	id := commit(t, q, "alice@example.com", "bob@example.org")
	waitFor(t, "first attempt", func() bool { i, _ := q.Get(id); return i.Attempts == 1 })
	out, errOut, code := run(t, dir, "show", id)
	if code != 0 {
		t.Fatalf("show: %d %q", code, errOut)
	}
	for _, want := range []string{"tls policy: " + stsPolicy, "last reply: 4.7.5 TLS handshake", "certificate has expired"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}
