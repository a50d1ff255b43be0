package config_test

import (
	"strings"
	"testing"
)

// Go's profiler on a listener others can reach gives them goroutine stacks
// (with addresses and user names in them), heap contents and a CPU burner.
// The container image binds listen.http to :8025.
func TestPprofOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		env        map[string]string
		want       string // "" = valid
	}{
		{"image default", "", map[string]string{"INKAN_LISTEN_HTTP": ":8025", "INKAN_HTTP_PPROF": "true"},
			`env INKAN_HTTP_PPROF: http.pprof: is on while listen.http ":8025" is reachable from the network`},
		{"file", "listen:\n  http: \"0.0.0.0:8025\"\nhttp:\n  pprof: true\n", nil,
			`:4: http.pprof: is on while listen.http "0.0.0.0:8025" is reachable from the network`},
		{"one of two", "listen:\n  http: \"127.0.0.1:8025, 192.0.2.7:8025\"\nhttp:\n  pprof: true\n", nil, `"192.0.2.7:8025"`},
		{"loopback", "listen:\n  http: \"127.0.0.1:8025,[::1]:8025\"\nhttp:\n  pprof: true\n", nil, ""},
		{"localhost", "listen:\n  http: \"localhost:8025\"\nhttp:\n  pprof: true\n", nil, ""},
		{"off", "listen:\n  http: \":8025\"\n", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.text, tc.env)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), "127.0.0.1:8025"):
				t.Errorf("the error does not say how to fix it: %v", err)
			}
		})
	}
}
