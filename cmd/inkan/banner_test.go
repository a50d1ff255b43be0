package main

import "testing"

// TestReachable: the banner's swaks line names an address a client on this
// host can dial, never a wildcard (issue 18: "swaks --server [::]:587").
func TestReachable(t *testing.T) {
	for in, want := range map[string]string{
		"[::]:587":       "127.0.0.1:587",
		"0.0.0.0:2525":   "127.0.0.1:2525",
		":25":            "127.0.0.1:25",
		"127.0.0.1:2525": "127.0.0.1:2525",
		"[::1]:2587":     "[::1]:2587",
		"192.0.2.10:587": "192.0.2.10:587",
		"not an address": "not an address",
	} {
		if got := reachable(in); got != want {
			t.Errorf("reachable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExampleDomain(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.com": "example.com",
		"example.org":      "example.org",
		"vm":               "example.com",
		"localhost":        "example.com",
		"a.b.example.net.": "b.example.net",
	} {
		if got := exampleDomain(in); got != want {
			t.Errorf("exampleDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
