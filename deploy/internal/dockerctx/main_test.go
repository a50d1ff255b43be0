package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCopyContext(t *testing.T) {
	root := t.TempDir()
	write(t, root, ".dockerignore", ".git\n**/*_test.go\ndeploy/*\n!deploy/build.sh\n")
	for _, f := range []string{".git/config", "go.mod", "cmd/x/main.go", "cmd/x/main_test.go", "deploy/build.sh", "deploy/k8s.yaml"} {
		write(t, root, f, f)
	}
	if err := os.Chmod(filepath.Join(root, "deploy/build.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "ctx")
	n, err := copyContext(root, out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(out, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			rel, _ := filepath.Rel(out, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return err
	})
	slices.Sort(got)
	want := []string{".dockerignore", "cmd/x/main.go", "deploy/build.sh", "go.mod"}
	if !slices.Equal(got, want) || n != len(want) {
		t.Errorf("copied %d: %v, want %v", n, got, want)
	}
	if fi, err := os.Stat(filepath.Join(out, "deploy/build.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("build.sh mode not kept: %v %v", fi.Mode(), err)
	}
	if _, err := copyContext(root, out); err == nil {
		t.Error("copying into an existing directory succeeded")
	}
}
