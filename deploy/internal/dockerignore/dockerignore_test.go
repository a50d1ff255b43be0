package dockerignore_test

import (
	"testing"

	"github.com/inkan-relay/inkan/deploy/internal/dockerignore"
)

func TestIgnored(t *testing.T) {
	m, err := dockerignore.Parse([]byte(`
# comment
.git
/.ci
**/testdata
**/*_test.go
deploy/*
!deploy/build.sh
*.md
!README.md
docs/**/*.png
a?c
`))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		".git":                          true,
		".git/config":                   true,
		".ci/run":                       true,
		"queue/testdata/x":              true,
		"testdata/x":                    true,
		"queue/spool_test.go":           true,
		"queue/spool.go":                false,
		"deploy/build.sh":               false,
		"deploy/README.md":              true, // deploy/* matches; !README.md is top-level only
		"deploy/kubernetes/x.yaml":      true, // the parent deploy/kubernetes matches deploy/*
		"CHANGES.md":                    true,
		"README.md":                     false,
		"docs/a/b/c.png":                true,
		"docs/c.png":                    true,
		"docs/c.jpg":                    false,
		"abc":                           true,
		"abbc":                          false,
		"cmd/inkan/main.go":             false,
		"cmd/inkan/testdata/golden.txt": true,
	} {
		if got := m.Ignored(path); got != want {
			t.Errorf("Ignored(%q) = %v, want %v", path, got, want)
		}
	}
	if m.SkipDir(".git") {
		t.Error("SkipDir with negation patterns present must be false")
	}
	m2, _ := dockerignore.Parse([]byte(".git\n"))
	if !m2.SkipDir(".git") || m2.SkipDir("cmd") {
		t.Error("SkipDir without negation")
	}
}

func TestParseRefusesClasses(t *testing.T) {
	for _, p := range []string{"[abc].go", `a\*b`} {
		if _, err := dockerignore.Parse([]byte(p)); err == nil {
			t.Errorf("Parse(%q) accepted", p)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(".git\n**/testdata\ndeploy/*\n!deploy/build.sh\n"), "deploy/build.sh")
	f.Add([]byte("*\n!go.mod\n"), "go.mod")
	f.Add([]byte("/a/**/b?\n# x\n"), "a/x/y/bc")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		m, err := dockerignore.Parse(data)
		if err != nil {
			return
		}
		m.Ignored(path)
		m.SkipDir(path)
	})
}
