// Command dockerctx copies the files a Docker build of this repository would
// receive (everything its .dockerignore lets through) into a directory, so
// that CI can build from exactly that context without a Docker engine.
//
//	go run ./deploy/internal/dockerctx -o DIR [-root .]
//
// DIR must not exist yet. Regular files keep their mode; symbolic links are
// copied as links.
package main

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/inkan-relay/inkan/deploy/internal/dockerignore"
)

func main() {
	root := flag.String("root", ".", "build context (repository root)")
	out := flag.String("o", "", "directory to create with the context's files")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: dockerctx -o DIR [-root DIR]")
		os.Exit(2)
	}
	n, err := copyContext(*root, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockerctx:", err)
		os.Exit(1)
	}
	fmt.Printf("dockerctx: %d files in %s\n", n, *out)
}

func copyContext(root, out string) (int, error) {
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil && !os.IsNotExist(err) {
		return 0, err
	}
	m, err := dockerignore.Parse(data)
	if err != nil {
		return 0, err
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		return 0, err
	}
	n := 0
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		slash := filepath.ToSlash(rel)
		if e.IsDir() {
			if m.SkipDir(slash) {
				return filepath.SkipDir
			}
			return nil
		}
		if m.Ignored(slash) {
			return nil
		}
		n++
		return copyEntry(p, filepath.Join(out, rel), e)
	})
	return n, err
}

func copyEntry(src, dst string, e fs.DirEntry) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if e.Type()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	info, err := e.Info()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil // sockets, fifos: Docker skips them too
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return f.Close()
}
