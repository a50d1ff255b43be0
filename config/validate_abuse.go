package config

import "fmt"

// abuse checks the settings against password guessing, pre-auth floods and
// sending without limit: auth's lockout and hashing keys, and quotas.
func (k *checker) abuse() {
	a := k.c.Auth
	k.atLeast("auth.max_failures_per_ip", a.MaxFailuresPerIP, 0)
	if a.MaxFailures == 0 && a.MaxFailuresPerIP > 0 {
		k.positive("auth.lockout", a.Lockout) // auth() checks it when max_failures > 0
	}
	if a.MaxFailuresPerIP > 0 && a.MaxFailures > 0 && a.MaxFailuresPerIP < a.MaxFailures {
		k.warn("auth.max_failures_per_ip", fmt.Sprintf("is %d, below max_failures (%d): a client is locked out before any one user is",
			a.MaxFailuresPerIP, a.MaxFailures), "set it to at least max_failures, e.g. 4 times it")
	}
	k.atLeast("auth.max_concurrent_hashes", a.MaxConcurrentHashes, 0)
	if a.HashWait <= 0 {
		k.bad("auth.hash_wait", "must be a positive duration", "set it to e.g. 5s")
	}

	q := k.c.Quotas
	k.quota("quotas.user", q.User)
	k.quota("quotas.network", q.Network)
	networks := map[string]bool{"trusted_networks": true}
	for _, n := range a.Networks {
		networks[n.Name] = true
	}
	seen := map[string]int{}
	for i, o := range q.Overrides {
		key := fmt.Sprintf("quotas.overrides[%d]", i)
		id := "user " + o.User
		switch {
		case o.User == "" && o.Network == "":
			k.bad(key, "names neither a user nor a network", "set user: NAME or network: NAME")
			continue
		case o.User != "" && o.Network != "":
			k.bad(key, "names both a user and a network", "write one override for each")
			continue
		case o.Network != "":
			id = "network " + o.Network
			if !networks[o.Network] {
				k.warn(key+".network", fmt.Sprintf("%q is not a network name", o.Network),
					`use a name from auth.networks, or "trusted_networks" for auth.trusted_networks`)
			}
		}
		if j, dup := seen[id]; dup {
			k.bad(key, fmt.Sprintf("overrides the quota of %s again (also quotas.overrides[%d])", id, j), "keep one override per user or network")
		}
		seen[id] = i
		k.quota(key, o.Quota())
	}
}

func (k *checker) quota(key string, q Quota) {
	for _, f := range []struct {
		name string
		n    int
	}{{"messages_per_hour", q.MessagesPerHour}, {"messages_per_day", q.MessagesPerDay},
		{"recipients_per_hour", q.RecipientsPerHour}, {"recipients_per_day", q.RecipientsPerDay}} {
		if f.n < 0 {
			k.bad(key+"."+f.name, fmt.Sprintf("is %d, must not be negative", f.n), "use 0 for no limit")
		}
	}
	if q.MessagesPerHour > 0 && q.MessagesPerDay > 0 && q.MessagesPerHour > q.MessagesPerDay {
		k.warn(key+".messages_per_hour", "is larger than messages_per_day, which caps it", "lower it, or raise messages_per_day")
	}
	if q.RecipientsPerHour > 0 && q.RecipientsPerDay > 0 && q.RecipientsPerHour > q.RecipientsPerDay {
		k.warn(key+".recipients_per_hour", "is larger than recipients_per_day, which caps it", "lower it, or raise recipients_per_day")
	}
}
