package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in human units: "90s", "5m", "1h30m",
// "5d", "2w", "1d12h". A bare number is seconds. Durations are never negative.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

const (
	durationFix = "use units like 90s, 5m, 1h30m, 5d or 2w"
	sizeFix     = "use units like 512KB, 25MB, 1GB or a byte count"
)

var errNegative = errors.New("negative")

// ParseDuration accepts Go durations plus "d" (24h) and "w" (7d) units, in any
// order ("1d12h", "36h", "1w2d"), or a bare number of seconds.
func ParseDuration(s string) (Duration, error) {
	d, err := parseDuration(s)
	if errors.Is(err, errNegative) {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (%s)", s, durationFix)
	}
	return d, nil
}

func parseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty")
	}
	if strings.HasPrefix(s, "-") {
		d, err := parseDuration(s[1:])
		if err != nil || d == 0 {
			return 0, err // "-0s" is zero, like time.ParseDuration
		}
		return 0, errNegative
	}
	s = strings.TrimPrefix(s, "+")
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n > math.MaxInt64/uint64(time.Second) {
			return 0, errors.New("overflow")
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	// Split into number+unit segments; d and w are ours, the rest go to time.ParseDuration.
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		j := i
		for j < len(s) && !(s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == '+' || s[j] == '-') {
			j++
		}
		if i == 0 || j == i {
			return 0, errors.New("syntax")
		}
		seg, unit := s[:j], s[i:j]
		var d time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(s[:i], 64)
			if err != nil {
				return 0, err
			}
			mult := 24 * time.Hour
			if unit == "w" {
				mult *= 7
			}
			v := f * float64(mult)
			if v >= math.MaxInt64 {
				return 0, errors.New("overflow")
			}
			d = time.Duration(v)
		default:
			var err error
			if d, err = time.ParseDuration(seg); err != nil {
				return 0, err
			}
		}
		if total > math.MaxInt64-d {
			return 0, errors.New("overflow")
		}
		total += d
		s = s[j:]
	}
	return Duration(total), nil
}

// String writes the shortest form ParseDuration reads back exactly: "5d",
// "1d12h", "1h30m", "90s", "500ms".
func (d Duration) String() string {
	t := time.Duration(d)
	if t <= 0 {
		return t.String()
	}
	var days string
	if n := t / (24 * time.Hour); n > 0 {
		days = strconv.FormatInt(int64(n), 10) + "d"
		if t -= n * 24 * time.Hour; t == 0 {
			return days
		}
	}
	s := t.String() // e.g. "1h0m0s"
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return days + s
}

// UnmarshalText lets YAML and env values use human units.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText writes the human form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a byte count written in human units: "25MB", "512KiB", "1.5G", or bytes.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1},
}

// ParseSize parses "25MB" (decimal, 25 000 000), "25MiB" or "25M" (binary),
// fractions like "1.5GB" (rounded down to whole bytes), or a plain byte count.
// Units are case-insensitive and may follow a space.
func ParseSize(s string) (Size, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	if !isDecimal(t) {
		return 0, fmt.Errorf("invalid size %q (%s)", s, sizeFix)
	}
	r, ok := new(big.Rat).SetString(t)
	if !ok {
		return 0, fmt.Errorf("invalid size %q (%s)", s, sizeFix)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n.Int64()), nil
}

// isDecimal reports whether s is digits with at most one '.' and a digit before it.
func isDecimal(s string) bool {
	if s == "" || s[0] < '0' || s[0] > '9' || len(s) > 40 {
		return false
	}
	dot := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i+1 < len(s):
			dot = true
		default:
			return false
		}
	}
	return true
}

// String writes the largest exact unit, preferring decimal ("25MB", "1MiB", "1500").
func (s Size) String() string {
	if s > 0 {
		for _, u := range []struct {
			name string
			mult int64
		}{{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KB", 1e3}, {"KiB", 1 << 10}} {
			if int64(s)%u.mult == 0 {
				return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// UnmarshalText lets YAML and env values use human units.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText writes the human form.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
