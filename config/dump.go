package config

import (
	"bytes"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted replaces secrets in Dump's output.
const Redacted = "<redacted>"

// Dump writes the effective configuration as YAML that Load reads back, with
// every secret (keys named password, secret or token) replaced by Redacted.
func (c *Config) Dump() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, err
	}
	redact(&n)
	src := c.Source
	if src == "" {
		src = "built-in defaults"
	}
	n.HeadComment = "Effective inkan configuration (from " + src + " and INKAN_* variables)."
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func redact(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; isSecretKey(k.Value) && v.Kind == yaml.ScalarNode && v.Value != "" {
				v.SetString(Redacted)
			}
		}
	}
	for _, c := range n.Content {
		redact(c)
	}
}

func isSecretKey(k string) bool {
	for _, s := range []string{"password", "secret", "token"} {
		if k == s || strings.HasSuffix(k, "_"+s) {
			return true
		}
	}
	return false
}
