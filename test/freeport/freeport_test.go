package freeport

import "testing"

// TestNeverTheSamePortTwice: the kernel often hands a just-closed ephemeral
// port straight back; Get must not.
func TestNeverTheSamePortTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	// A port the caller keeps is not handed out either.
	p, _ := Get()
	Keep(p + 1)
	for range 500 {
		if q, _ := Get(); q == p+1 {
			t.Fatalf("kept port %d handed out", q)
		}
	}
}
