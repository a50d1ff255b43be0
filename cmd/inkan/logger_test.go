package main

import (
	"bytes"
	"log/slog"
	"regexp"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

type counting struct{ n int }

func (c *counting) LogValue() slog.Value { c.n++; return slog.IntValue(c.n) }

// lateAttrs must write what slog's own handlers write for the same calls:
// it only moves the formatting of With attributes to each line.
func TestLateAttrsWritesWhatSlogWrites(t *testing.T) {
	stamp := regexp.MustCompile(`(time=|"time":")[^ "]+`)
	for _, format := range []string{"text", "json"} {
		var got, want bytes.Buffer
		opts := &slog.HandlerOptions{Level: slog.LevelInfo}
		ref := slog.New(slog.NewTextHandler(&want, opts))
		if format == "json" {
			ref = slog.New(slog.NewJSONHandler(&want, opts))
		}
		ours := newLogger(&got, config.Log{Level: "info", Format: format})
		for _, l := range []*slog.Logger{ref, ours} {
			l.Info("plain", "a", 1)
			s := l.With("client", "192.0.2.1", "listener", "relay")
			s.Debug("hidden", "x", 1)
			s.Info("accepted", "queue_id", "Q1", "size", 42)
			s2 := s.With("user", "alice").With()
			s2.Warn("refused", "reason", "rate limit")
			g := s2.WithGroup("tls").With("version", "1.3")
			g.Info("handshake", "cipher", "x")
			s.Info("again", "n", 12, "e", "")
			// Values that can change after With are taken when With is
			// called, as slog does.
			list, c := []string{"a"}, &counting{}
			w := l.With("c", c, "list", list)
			list[0] = "changed"
			w.Info("one")
			w.Info("two")
		}
		g, w := stamp.ReplaceAllString(got.String(), "$1T"), stamp.ReplaceAllString(want.String(), "$1T")
		if g != w {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", format, g, w)
		}
	}
}
