package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

// setLogOutput sends progress lines to stderr and to the run's log file.
func setLogOutput(w io.Writer) {
	logger = slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, w), nil))
}

// logf logs one progress line; the harness is a CLI whose progress is prose.
func logf(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) }

func chownTo(path, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, name, err)
	}
	return nil
}

// runCmd runs a short command and returns its combined output; the error
// includes the output, which is what a reader needs to fix it.
func runCmd(timeout time.Duration, stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
		}
		return out.String(), nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("%s %s: timed out after %s", name, strings.Join(args, " "), timeout)
	}
}

// dkimRecord returns the DKIM TXT value publishing the public half of the
// PEM private key in keyFile (PKCS#8, PKCS#1 or SEC1-free Ed25519).
func dkimRecord(keyFile string) (string, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return "", fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", fmt.Errorf("%s: no PEM block", keyFile)
	}
	var key any
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		key = k
	} else if k, err2 := x509.ParsePKCS1PrivateKey(blk.Bytes); err2 == nil {
		key = k
	} else {
		return "", fmt.Errorf("%s: not a PKCS#8 or PKCS#1 key: %w", keyFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return "", fmt.Errorf("%s: unsupported key type %T", keyFile, key)
	}
	switch pub := signer.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("marshal public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("%s: unsupported key type %T", keyFile, signer.Public())
}

var quotedRE = regexp.MustCompile(`"([^"]*)"`)

// bindTXT joins the quoted strings of a BIND-style TXT file (opendkim-genkey's
// s1.txt) into one value.
func bindTXT(b []byte) (string, error) {
	m := quotedRE.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return "", errors.New("no quoted TXT strings")
	}
	var s strings.Builder
	for _, x := range m {
		s.Write(x[1])
	}
	return s.String(), nil
}

// clearSpool deletes regular files below dirs (a stopped Postfix's queue).
func clearSpool(dirs ...string) {
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				_ = os.Remove(p)
			}
			return nil
		})
	}
}

func countFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
