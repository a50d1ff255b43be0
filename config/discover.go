package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// SystemPath is the config file every command reads when neither -config
// nor INKAN_CONFIG names one.
const SystemPath = "/etc/inkan/inkan.yaml"

// Sources Discover reports, in the order it tries them.
const (
	FromFlag     = "-config"
	FromEnv      = EnvConfig
	FromSystem   = "system path"
	FromUser     = "per-user path"
	FromEmbedded = "embedded default"
)

// Discover says which config file a command uses, and why. The order is the
// same for every command (serve, check, user, dkim, dns, queue, health,
// status, sendmail):
//
//  1. flagValue, the -config flag, when not "";
//  2. $INKAN_CONFIG when set; set to "" it means no file (the embedded
//     default), which lets a test or a container ignore the files below;
//  3. SystemPath (/etc/inkan/inkan.yaml) when it exists;
//  4. the per-user path, $XDG_CONFIG_HOME/inkan/inkan.yaml or else
//     ~/.config/inkan/inkan.yaml, when it exists;
//  5. none: path is "" and the embedded default is used (Default, then the
//     INKAN_* variables).
//
// source is one of FromFlag, FromEnv, FromSystem, FromUser, FromEmbedded. A
// file that exists but cannot be read is still chosen, so that Load reports
// it instead of silently falling back to the next one.
func Discover(flagValue string) (path, source string) {
	return discover(flagValue, os.LookupEnv, exists)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

func discover(flagValue string, env func(string) (string, bool), exists func(string) bool) (string, string) {
	if flagValue != "" {
		return flagValue, FromFlag
	}
	if p, ok := env(EnvConfig); ok {
		if p == "" {
			return "", FromEmbedded
		}
		return p, FromEnv
	}
	if exists(SystemPath) {
		return SystemPath, FromSystem
	}
	if p := UserPath(env); p != "" && exists(p) {
		return p, FromUser
	}
	return "", FromEmbedded
}

// UserPath is the per-user config file: $XDG_CONFIG_HOME/inkan/inkan.yaml,
// else $HOME/.config/inkan/inkan.yaml; "" without either variable.
func UserPath(env func(string) (string, bool)) string {
	if d, ok := env("XDG_CONFIG_HOME"); ok && filepath.IsAbs(d) {
		return filepath.Join(d, "inkan", "inkan.yaml")
	}
	if h, ok := env("HOME"); ok && filepath.IsAbs(h) {
		return filepath.Join(h, ".config", "inkan", "inkan.yaml")
	}
	return ""
}

// Describe is the line commands print about the config they use, e.g.
// "config: /etc/inkan/inkan.yaml (system path)" or "config: embedded default
// (no -config, INKAN_CONFIG, /etc/inkan/inkan.yaml or ~/.config/inkan/inkan.yaml)".
func Describe(path, source string) string {
	if path != "" {
		return "config: " + path + " (" + source + ")"
	}
	if _, set := os.LookupEnv(EnvConfig); set {
		return "config: embedded default (INKAN_CONFIG is set to \"\")"
	}
	user := UserPath(os.LookupEnv)
	if user == "" {
		user = "~/.config/inkan/inkan.yaml"
	}
	return "config: embedded default (no -config, INKAN_CONFIG, " + SystemPath + " or " + user + ")"
}

// LoadDiscovered is Load on the file Discover finds. A file that cannot be
// read is reported as an *Error naming where its path came from (the flag,
// INKAN_CONFIG or the path searched) with a fix.
func LoadDiscovered(flagValue string) (c *Config, source string, err error) {
	path, source := Discover(flagValue)
	c, err = loadFrom(path, source)
	return c, source, err
}
