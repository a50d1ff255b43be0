package config

import (
	"os"
	"testing"
)

// FuzzLoad feeds arbitrary bytes through the file pipeline: decode, finalize,
// Validate, Warnings and Dump. Nothing may panic, and a configuration that
// validates must survive Dump and reload unchanged.
func FuzzLoad(f *testing.F) {
	if b, err := os.ReadFile(examplePath); err == nil {
		f.Add(b)
		f.Add([]byte(uncomment(string(b))))
	}
	for _, s := range []string{
		"hostname: mail.example.com\n",
		"limits: {max_message_size: 10MB}\n",
		"auth:\n  networks:\n    - {name: a, cidrs: [10.0.0.0/8], rate_limit: 3}\n",
		"delivery:\n  smarthost: &r {address: '[a.example.net]:587'}\n  sender_relay:\n    '@x.org': {<<: *r, tls: implicit}\n",
		"a: &a [*a]\n",
		"queue: {retry_min: 5d, retry_max: 1w}\n",
		"- 1\n",
		"hostname: !!binary aGVsbG8=\n",
		"dkim: {keys: [{domain: example.com, selector: s, key_file: /k}]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		noEnv := func(string) (string, bool) { return "", false }
		c := defaults(0, func() (string, error) { return "h.example.com", nil }, noEnv)
		c.src = newSources()
		if errs := decodeYAML("fuzz.yaml", data, c, c.src); len(errs) > 0 {
			for _, e := range errs {
				_ = e.Error()
			}
			return
		}
		finalize(c)
		_ = c.Warnings()
		if c.Validate() != nil {
			return
		}
		out, err := c.Dump()
		if err != nil {
			t.Fatalf("Dump: %v", err)
		}
		// Secrets are redacted in the dump; compare against a redacted reload.
		back := defaults(0, func() (string, error) { return "h.example.com", nil }, noEnv)
		back.src = newSources()
		if errs := decodeYAML("dump.yaml", out, back, back.src); len(errs) > 0 {
			t.Fatalf("dump does not load: %v\n%s", errs, out)
		}
		finalize(back)
		again, err := back.Dump()
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(out) {
			t.Fatalf("dump round trip differs:\n%s\n---\n%s", out, again)
		}
	})
}
