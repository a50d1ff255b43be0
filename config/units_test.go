package config_test

import (
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
)

func TestParseDuration(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "90s", want: 90 * time.Second},
		{in: "5m", want: 5 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "5d", want: 5 * day},
		{in: "2w", want: 14 * day},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "12h1d", want: 36 * time.Hour},
		{in: "1w2d3h", want: 9*day + 3*time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "300", want: 300 * time.Second},
		{in: " 5m ", want: 5 * time.Minute},
		{in: "0", want: 0},
		{in: "0s", want: 0},
		{in: "-0s", want: 0},
		{in: "+5m", want: 5 * time.Minute},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "", err: true},
		{in: "-5m", err: true},
		{in: "1h-5m", err: true},
		{in: "5x", err: true},
		{in: "d", err: true},
		{in: "5 minutes", err: true},
		{in: "1.5", err: true},
		{in: "106752d", err: true},
		{in: "9223372036854775807", err: true},
		{in: "106751d23h", want: 106751*day + 23*time.Hour},
		{in: "100000d100000d", err: true},
	} {
		got, err := config.ParseDuration(tc.in)
		if (err != nil) != tc.err || got.D() != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, err=%v", tc.in, got.D(), err, tc.want, tc.err)
		}
	}
}

func TestDurationString(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {5 * 24 * time.Hour, "5d"}, {90 * time.Minute, "1h30m"}, {36 * time.Hour, "1d12h"},
		{time.Hour, "1h"}, {5 * time.Minute, "5m"}, {10 * time.Minute, "10m"}, {70 * time.Minute, "1h10m"},
		{90 * time.Second, "1m30s"}, {500 * time.Millisecond, "500ms"}, {24*time.Hour + time.Second, "1d1s"},
		{time.Hour + time.Millisecond, "1h0m0.001s"},
	} {
		if got := config.Duration(tc.d).String(); got != tc.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "25MB", want: 25e6},
		{in: "25mb", want: 25e6},
		{in: "25 MB", want: 25e6},
		{in: "25MiB", want: 25 << 20},
		{in: "25M", want: 25 << 20},
		{in: "512KB", want: 512e3},
		{in: "512k", want: 512 << 10},
		{in: "1GB", want: 1e9},
		{in: "1.5GB", want: 15e8},
		{in: "1.5KiB", want: 1536},
		{in: "2TB", want: 2e12},
		{in: "1000", want: 1000},
		{in: "10B", want: 10},
		{in: "0", want: 0},
		{in: "", err: true},
		{in: "25 megs", err: true},
		{in: "-1MB", err: true},
		{in: "1.MB", err: true},
		{in: ".5MB", err: true},
		{in: "1e6", err: true},
		{in: "0x10", err: true},
		{in: "9223372036854775807", want: 9223372036854775807},
		{in: "9223372036854775808", err: true},
		{in: "10000000TB", err: true},
	} {
		got, err := config.ParseSize(tc.in)
		if (err != nil) != tc.err || int64(got) != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, tc := range []struct {
		s    config.Size
		want string
	}{
		{0, "0"}, {25e6, "25MB"}, {1 << 20, "1MiB"}, {1500, "1500"}, {1536, "1536"}, {2048, "2KiB"}, {1e9, "1GB"}, {7, "7"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"5d", "1h30m", "300", "2w1d", "1.5d", "-0s", "106751d", "µs", "1e3h", "+0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := config.ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d.D())
		}
		back, err := config.ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("round trip of %q: %q -> %v, %v", s, d.String(), back.D(), err)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"25MB", "1.5GiB", "1000", "7 k", "9223372036854775807", "0.0001KB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := config.ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		back, err := config.ParseSize(n.String())
		if err != nil || back != n {
			t.Fatalf("round trip of %q: %q -> %d, %v", s, n.String(), back, err)
		}
	})
}
