package cli

import (
	"errors"
	"io/fs"
	"regexp"
	"strings"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/safefile"
	"github.com/inkan-relay/inkan/relay/signing"
)

// keyPathRE finds a setting's dotted path at the start of a message from
// another package ("dkim.keys[0]: ...", `auth.trusted_networks[2] "x": ...`).
var keyPathRE = regexp.MustCompile(`^(?:dkim: )?([a-z_]+(?:\.[a-z_]+|\[\d+\])+)(?::| )\s*`)

// fileLineRE matches a message that starts with the file and line it is about.
var fileLineRE = regexp.MustCompile(`^/[^:\s]*:\d+: `)

// Locate turns err, about something the setting key names, into a
// *config.Error at that setting's file line or variable, with the fix
// split out of the text where the other package gave one.
func Locate(cfg *config.Config, key string, err error) error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, Locate(cfg, key, e))
		}
		return errors.Join(out...)
	}
	var ce *config.Error
	if errors.As(err, &ce) {
		return ce
	}
	msg, fix := err.Error(), ""
	if m := strings.TrimPrefix(msg, "dkim: "); fileLineRE.MatchString(m) {
		return errors.New(m) // located already: an OpenDKIM table line
	}
	var ue *safefile.UnsafeError
	var ke *signing.KeyFileError
	switch {
	case errors.As(err, &ue):
		msg, fix = ue.What+" "+ue.Path+" "+ue.Problem, ue.Fix
	case errors.As(err, &ke) && !strings.Contains(msg, "dkim.keys["):
		msg, fix = ke.File+": "+ke.Problem, ke.Fix
	}
	if m := keyPathRE.FindStringSubmatch(msg); m != nil && strings.HasPrefix(m[1], strings.SplitN(key, ".", 2)[0]) {
		key, msg = m[1], msg[len(m[0]):]
	}
	msg = strings.TrimPrefix(msg, "dkim: ")
	if i := strings.LastIndex(msg, " (fix: "); i >= 0 && strings.HasSuffix(msg, ")") && fix == "" {
		msg, fix = msg[:i], msg[i+len(" (fix: "):len(msg)-1]
	}
	if fix == "" && !strings.HasSuffix(msg, ")") { // "(create it with ...)" is a fix already
		fix = defaultFix(key, err)
	}
	return cfg.NewError(key, msg, fix)
}

// defaultFix is the advice for a problem whose text has none.
func defaultFix(key string, err error) string {
	switch {
	case key == "data_dir":
		return "create it for the user inkan runs as (install -d -m 0700 -o USER DIR), or set data_dir (INKAN_DATA_DIR) to a folder of its own"
	case errors.Is(err, fs.ErrNotExist):
		return "create the file, or correct " + key
	case errors.Is(err, fs.ErrPermission):
		return "let the user inkan runs as read it (root-owned, group inkan, mode 0640 is fine)"
	case key == "tls.cert_file":
		return "give a PEM certificate chain in cert_file and its private key in key_file"
	}
	return ""
}
