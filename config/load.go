package config

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// Load builds the configuration: Default, then the YAML file at path, then
// INKAN_CONFIG_YAML, then the per-setting INKAN_* variables, and validates
// the result. path "" means $INKAN_CONFIG, or no file when that is unset too.
// Commands find their file with LoadDiscovered (see Discover) instead.
//
// Every problem is reported at once (errors.Join of *Error values, one per
// line when printed); unknown INKAN_* variables are among them.
func Load(path string) (*Config, error) { return loadFrom(path, "") }

// loadFrom is Load; source (see Discover) says where path came from, for
// the error when the file cannot be read.
func loadFrom(path, source string) (*Config, error) {
	c, err := loadEnv(path, source, os.LookupEnv)
	if unknown := unknownEnv(os.Environ()); len(unknown) > 0 {
		return nil, errors.Join(append(unknown, err)...)
	}
	return c, err
}

// LoadEnv is Load with the environment given as a lookup function (os.LookupEnv
// in production), for tests. It cannot list the environment, so unlike Load it
// does not report unknown INKAN_* variables.
func LoadEnv(path string, env func(string) (string, bool)) (*Config, error) {
	return loadEnv(path, "", env)
}

func loadEnv(path, source string, env func(string) (string, bool)) (*Config, error) {
	if path == "" {
		path, _ = env(EnvConfig)
		source = FromEnv
	}
	c := defaults(os.Geteuid(), os.Hostname, env)
	c.src = newSources()
	var errs []error
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, readError(path, source, err)
		}
		c.Source = path
		errs = append(errs, decodeYAML(path, data, c, c.src)...)
	}
	errs = append(errs, applyEnv(c, c.src, env)...)
	finalize(c)
	autoKeys(c)
	// Validate even after decoding errors: a value that failed to decode kept
	// its previous one, and the user gets every problem in one pass.
	verrs, _ := c.check()
	if errs = append(errs, verrs...); len(errs) > 0 {
		sortErrors(errs, path)
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// readError explains a config file that cannot be read, naming where its
// path came from and what to do.
func readError(path, source string, err error) *Error {
	e := &Error{File: path, cause: err}
	if source == FromEnv {
		e.File, e.Env, e.Msg = "", EnvConfig, path+": "
	}
	where := "give -config the path of the YAML file"
	switch source {
	case FromEnv:
		where = "point INKAN_CONFIG at the YAML file, or unset it"
	case FromSystem, FromUser:
		where = "fix the file, or name another with -config"
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.Msg += "no such file"
		e.Fix = where + " (without -config and INKAN_CONFIG, inkan reads " + SystemPath + " if it exists, else the embedded default)"
	case errors.Is(err, fs.ErrPermission):
		e.Msg += "permission denied"
		e.Fix = "run the command as root or as inkan's user (sudo -u inkan inkan ...), or let that user read the file: chgrp inkan " + path + " && chmod 0640 " + path
	case errors.As(err, &pe) && errors.Is(pe.Err, syscall.EISDIR):
		e.Msg += "is a directory"
		e.Fix = where + ", e.g. " + SystemPath
	default:
		e.Msg += "cannot read: " + err.Error()
		e.Fix = where
	}
	return e
}

// sortErrors orders problems as a reader meets them: the config file by line,
// then INKAN_CONFIG_YAML, then variables, then defaults.
func sortErrors(errs []error, path string) {
	rank := func(err error) (int, int) {
		var e *Error
		switch {
		case !errors.As(err, &e):
			return 4, 0
		case e.Env != "":
			return 2, 0
		case e.File == path:
			return 0, e.Line
		case e.File != "":
			return 1, e.Line
		}
		return 3, 0
	}
	slices.SortStableFunc(errs, func(a, b error) int {
		ra, la := rank(a)
		rb, lb := rank(b)
		return cmp.Or(cmp.Compare(ra, rb), cmp.Compare(la, lb))
	})
}
