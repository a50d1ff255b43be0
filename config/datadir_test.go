package config

import (
	"strings"
	"testing"
)

// Without HOME, XDG_STATE_HOME or STATE_DIRECTORY, a user other than root
// used to get /tmp/inkan-UID: a name anyone can create first, with their
// own links and files in it. Now there is no default and the check says
// which setting to give.
func TestAttackNoPredictableTmpDataDir(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	c := defaults(1000, func() (string, error) { return "h.example.com", nil }, none)
	if strings.HasPrefix(c.DataDir, "/tmp") || c.DataDir != "" {
		t.Fatalf("data_dir defaults to %q", c.DataDir)
	}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "data_dir") {
		t.Fatalf("Validate = %v, want an error naming data_dir", err)
	}
}
