package config_test

import (
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

func TestValidateAbuseSettings(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"per-ip failures", "auth:\n  max_failures_per_ip: -1", "auth.max_failures_per_ip: is -1, must be at least 0"},
		{"lockout for per-ip only", "auth:\n  max_failures: 0\n  lockout: 0s", "auth.lockout: must be a positive duration"},
		{"hashes", "auth:\n  max_concurrent_hashes: -2", "auth.max_concurrent_hashes: is -2, must be at least 0"},
		{"hash wait", "auth:\n  hash_wait: 0s", "auth.hash_wait: must be a positive duration; set it to e.g. 5s"},
		{"negative quota", "quotas:\n  user:\n    recipients_per_day: -5", "quotas.user.recipients_per_day: is -5, must not be negative; use 0 for no limit"},
		{"override without name", "quotas:\n  overrides:\n    - messages_per_hour: 5", "quotas.overrides[0]: names neither a user nor a network; set user: NAME or network: NAME"},
		{"override with both", "quotas:\n  overrides:\n    - {user: a, network: b}", "quotas.overrides[0]: names both a user and a network"},
		{"override twice", "quotas:\n  overrides:\n    - {user: a}\n    - {user: a, messages_per_day: 3}", "quotas.overrides[1]: overrides the quota of user a again (also quotas.overrides[0])"},
		{"override negative", "quotas:\n  overrides:\n    - {network: trusted_networks, messages_per_day: -1}", "quotas.overrides[0].messages_per_day: is -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text+"\n")
			_, err := config.LoadEnv(path, envMap(nil))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\nlacks\n%s", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), path+":") {
				t.Errorf("error does not start with the file and line: %v", err)
			}
		})
	}
}

func TestAbuseWarningsAndEnv(t *testing.T) {
	c := mustLoad(t, "auth:\n  max_failures: 5\n  max_failures_per_ip: 3\n"+
		"quotas:\n  user:\n    messages_per_hour: 50\n    messages_per_day: 10\n  overrides:\n    - {network: nosuch}\n", nil)
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{
		"auth.max_failures_per_ip: is 3, below max_failures (5)",
		"quotas.user.messages_per_hour: is larger than messages_per_day",
		`quotas.overrides[0].network: "nosuch" is not a network name`,
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	c = mustLoad(t, "", map[string]string{"INKAN_QUOTAS_USER_MESSAGES_PER_DAY": "0", "INKAN_AUTH_MAX_CONCURRENT_HASHES": "2", "INKAN_HTTP_STATUS": "true"})
	if c.Quotas.User.MessagesPerDay != 0 || c.Quotas.User.MessagesPerHour != 1000 || c.Auth.MaxConcurrentHashes != 2 || !c.HTTP.Status {
		t.Errorf("env: %+v %+v", c.Quotas.User, c.Auth)
	}
	d := config.Default()
	if d.Auth.MaxFailuresPerIP != 20 || d.Auth.HashWait.D() == 0 || d.Quotas.User.MessagesPerHour != 1000 || d.Quotas.Network != (config.Quota{}) || d.HTTP.Status {
		t.Errorf("defaults: %+v %+v %v", d.Auth, d.Quotas, d.HTTP.Status)
	}
}
