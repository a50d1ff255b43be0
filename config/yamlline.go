package config

import (
	"bytes"
	"strings"

	"go.yaml.in/yaml/v3"
)

// errorLine finds the line a YAML syntax error is really on. The parser
// reports some errors at the start of the enclosing block (a key indented
// one space too far on line 7 of a mapping that starts on line 3 is
// "line 3: did not find expected key"), so the document is parsed again,
// one line longer each time, and the first prefix that fails with the same
// problem ends on the offending line. reported is the parser's line (0 when
// it gave none) and is kept when no prefix reproduces the problem.
func errorLine(data []byte, problem string, reported int) int {
	const maxLines = 2000 // beyond that, the parser's line is good enough
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxLines {
		return reported
	}
	n := 0
	for k, l := range lines {
		n += len(l)
		var doc yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(data[:n]))
		err := dec.Decode(&doc)
		if err == nil {
			continue
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			msg = m[2]
		}
		if msg == problem {
			return k + 1
		}
	}
	return reported
}
