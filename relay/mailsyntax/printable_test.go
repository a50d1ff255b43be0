package mailsyntax

import "testing"

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"250 2.0.0 Ok: queued as X":           "250 2.0.0 Ok: queued as X",
		"Grüße, 日本":                           "Grüße, 日本",
		"a\tb":                                "a\tb",
		"\x1b]0;owned\x07":                    "?]0;owned?",
		"\x1b[2J\rroot# ":                     "?[2J?root# ",
		"line\r\nnext":                        "line??next",
		"\u009b31m \x9b32m \x7f":              "?31m ?32m ?",
		"\u202eevil\u2066x\u2069\u200f\u061c": "?evil?x???",
		"nul\x00":                             "nul?",
		"\xff\xfe":                            "??",
		"":                                    "",
		"\ufffd is shown as it is written":    "\ufffd is shown as it is written",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
