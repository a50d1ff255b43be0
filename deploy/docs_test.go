package deploy_test

// The guides quote what inkan says and name its settings; these tests keep
// those quotes and names true as the code changes.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

// guides are the documents an operator reads.
var guides = []string{
	"README.md",
	"deploy/README.md",
	"deploy/clients.md",
	"deploy/oauth2.md",
	"deploy/thunderbird.md",
	"deploy/migrating-from-postfix-opendkim.md",
	"deploy/postfix/README.md",
	"deploy/systemd/README.md",
}

// goSources is the text of every non-test Go file of the binary, with
// white space removed so that a reply's code reads the same however the
// source is formatted.
func goSources(t *testing.T) (text, squeezed string) {
	t.Helper()
	var b strings.Builder
	for _, dir := range []string{"auth", "relay", "queue", "cmd"} {
		filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				data, _ := os.ReadFile(p)
				b.Write(data)
				b.WriteByte('\n')
			}
			return nil
		})
	}
	text = b.String()
	return text, strings.Join(strings.Fields(text), "")
}

// replyRE finds an SMTP reply quoted in backticks: code, enhanced code and
// the text after them.
var replyRE = regexp.MustCompile("`[^`]*?\\b([2-5]\\d\\d) ([2-5])\\.(\\d{1,3})\\.(\\d{1,3})\\b([^`]*)`")

// placeholderRE splits a quoted reply text into the parts the server writes
// as they are: addresses (<...>), "...", and words in capitals (NAME, ID)
// stand for what varies.
var placeholderRE = regexp.MustCompile(`<[^>]*>|\.\.\.|…|\b[A-Z][A-Z0-9_]+\b`)

// TestDocsQuoteRepliesTheServerSends: every SMTP reply a guide quotes has a
// code and enhanced code the server uses together, and its words (all but
// placeholders) are in the code. Write variable parts as NAME or <ADDRESS>.
func TestDocsQuoteRepliesTheServerSends(t *testing.T) {
	src, squeezed := goSources(t)
	for _, g := range guides {
		for _, m := range replyRE.FindAllStringSubmatch(string(readFile(t, g)), -1) {
			code, a, b, c, text := m[1], m[2], m[3], m[4], m[5]
			pair := "Code:" + code + ",EnhancedCode:smtp.EnhancedCode{" + a + "," + b + "," + c + "}"
			if !strings.Contains(squeezed, pair) && !strings.Contains(src, code+" "+a+"."+b+"."+c) {
				t.Errorf("%s quotes %s, a reply inkan never sends (no %s in the code)", g, m[0], code+" "+a+"."+b+"."+c)
			}
			for _, part := range placeholderRE.Split(text, -1) {
				part = strings.Trim(part, " ,;:()\"'")
				if strings.Count(part, " ") < 1 {
					continue
				}
				if i := strings.Index(src, part); i < 0 {
					t.Errorf("%s quotes %s: the server never writes %q", g, m[0], part)
				} else if base := replacedBase(src, i); base != "" {
					t.Errorf("%s quotes %s: %q is %s's text, which every reply replaces (withMessage)", g, m[0], part, base)
				}
			}
		}
	}
}

var defRE = regexp.MustCompile(`(\w+)\s*=\s*&smtp\.SMTPError\{\s*$`)

// replacedBase returns the name of the reply variable whose Message is at
// src[i] when no code sends that variable as it is: it is only the code
// and enhanced code of replies that withMessage words differently.
func replacedBase(src string, i int) string {
	lines := strings.Split(src[:i], "\n")
	var name string
	for j := len(lines) - 1; j >= 0 && j >= len(lines)-3; j-- {
		if m := defRE.FindStringSubmatch(lines[j]); m != nil {
			name = m[1]
			break
		}
	}
	if name == "" {
		return ""
	}
	use := regexp.MustCompile(`\b` + name + `\b`)
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "//") || defRE.MatchString(l) || !use.MatchString(l) ||
			strings.Contains(l, "withMessage("+name) || strings.Contains(l, name+".Code") || strings.Contains(l, name+".EnhancedCode") {
			continue
		}
		return ""
	}
	return name
}

// keyRE finds a backticked dotted setting name, possibly with a value
// (`http.autoconfig: true`).
var keyRE = regexp.MustCompile("`((?:hostname|data_dir|listen|tls|auth|dkim|delivery|queue|limits|quotas|headers|log|http)(?:\\.[a-z0-9_*]+|\\[\\d+\\])+)(?:[:=][^`]*)?`")

// TestDocsNameRealSettings: every setting a guide names in backticks exists,
// and every YAML snippet of inkan settings in a guide has no unknown key.
func TestDocsNameRealSettings(t *testing.T) {
	var patterns []*regexp.Regexp
	for _, k := range config.Keys() {
		patterns = append(patterns, regexp.MustCompile(`^`+strings.ReplaceAll(regexp.QuoteMeta(k), `\*`, `.+`)+`$`))
	}
	known := func(k string) bool {
		k = regexp.MustCompile(`\[\d+\]`).ReplaceAllString(k, ".0")
		for _, p := range patterns {
			if p.MatchString(k) {
				return true
			}
		}
		return false
	}
	for _, g := range guides {
		text := string(readFile(t, g))
		for _, m := range keyRE.FindAllStringSubmatch(text, -1) {
			if strings.HasSuffix(m[1], ".go") { // a source file: `tls.go`
				continue
			}
			if !known(m[1]) {
				t.Errorf("%s names %s, which is not a setting", g, m[0])
			}
		}
		for i, block := range yamlBlocks(text) {
			p := filepath.Join(t.TempDir(), "snippet.yaml")
			os.WriteFile(p, []byte(block), 0o600)
			_, err := config.LoadEnv(p, func(string) (string, bool) { return "", false })
			if err != nil && strings.Contains(err.Error(), "unknown setting") {
				t.Errorf("%s, YAML block %d:\n%s\n%v", g, i+1, block, err)
			}
		}
	}
}

// yamlBlocks returns the ```yaml blocks of a guide whose top-level keys are
// all inkan sections (other YAML, such as a Compose file, is skipped).
func yamlBlocks(md string) []string {
	top := regexp.MustCompile(`^([a-z_]+):`)
	sections := map[string]bool{}
	for _, k := range config.Keys() {
		sections[strings.SplitN(k, ".", 2)[0]] = true
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(md, -1) {
		ours := true
		for _, l := range strings.Split(m[1], "\n") {
			if k := top.FindStringSubmatch(l); k != nil && !sections[k[1]] {
				ours = false
			}
		}
		if ours {
			out = append(out, m[1])
		}
	}
	return out
}
