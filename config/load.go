package config

import (
	"errors"
	"fmt"
	"os"
)

// Load builds the configuration: Default, then the YAML file at path, then
// INKAN_CONFIG_YAML, then the per-setting INKAN_* variables, and validates
// the result. path "" means $INKAN_CONFIG, or no file when that is unset too.
//
// Every problem is reported at once (errors.Join of *Error values, one per
// line when printed); unknown INKAN_* variables are among them.
func Load(path string) (*Config, error) {
	c, err := LoadEnv(path, os.LookupEnv)
	if unknown := unknownEnv(os.Environ()); len(unknown) > 0 {
		return nil, errors.Join(append(unknown, err)...)
	}
	return c, err
}

// LoadEnv is Load with the environment given as a lookup function (os.LookupEnv
// in production), for tests. It cannot list the environment, so unlike Load it
// does not report unknown INKAN_* variables.
func LoadEnv(path string, env func(string) (string, bool)) (*Config, error) {
	if path == "" {
		path, _ = env(EnvConfig)
	}
	c := defaults(os.Geteuid(), os.Hostname, env)
	c.src = newSources()
	var errs []error
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		c.Source = path
		errs = append(errs, decodeYAML(path, data, c, c.src)...)
	}
	errs = append(errs, applyEnv(c, c.src, env)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	finalize(c)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}
