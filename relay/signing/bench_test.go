package signing

import (
	"bytes"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

// BenchmarkSign measures Begin/Write/Finish, the path the SMTP server runs
// for each message; b.SetBytes reports throughput over the whole message.
func BenchmarkSign(b *testing.B) {
	dir := b.TempDir()
	rsaKey := config.DKIMKey{Domain: "example.com", Selector: "rsa1", KeyFile: writeKey(b, dir, "rsa", testRSA(b, 1), 0o600)}
	edKey := config.DKIMKey{Domain: "example.com", Selector: "ed1", KeyFile: writeKey(b, dir, "ed", testEd25519(b, 30), 0o600)}
	sets := []struct {
		name string
		keys []config.DKIMKey
	}{
		{"rsa2048", []config.DKIMKey{rsaKey}},
		{"ed25519", []config.DKIMKey{edKey}},
		{"dual", []config.DKIMKey{rsaKey, edKey}},
	}
	header := []byte(strings.SplitAfter(testMsg, "\r\n\r\n")[0])
	line := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2) + "\r\n")
	for _, set := range sets {
		s := newSigner(b, config.DKIM{Keys: set.keys})
		for _, size := range []struct {
			name string
			n    int
		}{{"4KB", 4 << 10}, {"100KB", 100 << 10}} {
			body := bytes.Repeat(line, size.n/len(line)+1)[:size.n]
			b.Run(set.name+"/"+size.name, func(b *testing.B) {
				b.SetBytes(int64(len(header) + len(body)))
				b.ReportAllocs()
				for b.Loop() {
					st, d := s.Begin(msgOf(string(header)))
					if st == nil {
						b.Fatal(d.Reason)
					}
					st.Write(header)
					for p := body; len(p) > 0; {
						n := min(len(p), 32<<10)
						st.Write(p[:n])
						p = p[n:]
					}
					if _, err := st.Finish(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
