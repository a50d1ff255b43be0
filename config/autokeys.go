package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// AutoKeysDir is where inkan looks for keys when the configuration names
// none: DataDir/dkim, the folder `inkan dkim keygen -o` is pointed at by the
// start banner of the embedded default.
func AutoKeysDir(dataDir string) string {
	if dataDir == "" {
		return ""
	}
	return filepath.Join(dataDir, "dkim")
}

// autoKeys fills dkim.keys from DataDir/dkim when no DKIM setting is made
// (no keys, key_table, signing_table or opendkim_conf), so that a key made
// with `inkan dkim keygen -d example.com -s s1 -o DATA_DIR/dkim` is used at
// the next start or SIGHUP without editing a file. Each DOMAIN.SELECTOR.key
// there becomes a key for DOMAIN with selector SELECTOR (the part after the
// last dot); names that do not give a valid domain and selector are skipped.
// Nothing else reads or writes that folder.
func autoKeys(c *Config) {
	d := c.DKIM
	if len(d.Keys) > 0 || d.KeyTable != "" || d.SigningTable != "" || d.OpenDKIMConf != "" {
		return
	}
	dir := AutoKeysDir(c.DataDir)
	if dir == "" {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // no folder, no keys; an unreadable one shows when keygen writes there
	}
	var keys []DKIMKey
	for _, e := range entries {
		domain, selector, ok := KeyFileName(e.Name())
		if !ok || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		keys = append(keys, DKIMKey{Domain: domain, Selector: selector, KeyFile: path})
		c.src.set("dkim.keys["+strconv.Itoa(len(keys)-1)+"]", origin{file: path})
	}
	if len(keys) == 0 {
		return
	}
	c.DKIM.Keys = keys // in file name order: os.ReadDir sorts
	c.KeysDir = dir
}

// KeyFileName splits the name `inkan dkim keygen` gives a key,
// DOMAIN.SELECTOR.key, into its domain and selector (the label before
// ".key"; keygen's selectors for this folder have no dot).
func KeyFileName(name string) (domain, selector string, ok bool) {
	base, isKey := strings.CutSuffix(name, ".key")
	i := strings.LastIndexByte(base, '.')
	if !isKey || strings.HasPrefix(name, ".") || i <= 0 {
		return "", "", false
	}
	domain, selector = strings.ToLower(base[:i]), base[i+1:]
	if !mailsyntax.ValidDomain(domain, mailsyntax.SigningDomain) || !mailsyntax.ValidDomain(selector, mailsyntax.Selector) {
		return "", "", false
	}
	return domain, selector, true
}
