package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
)

func quotaCount(t *testing.T, scope, quota string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "inkan_quota_exceeded_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["scope"] == scope && l["quota"] == quota {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestQuotaWindows(t *testing.T) {
	clock := auth.UseFakeClock(t)
	q := auth.NewQuotas()
	alice := auth.Sender{Name: "alice"}
	lim := config.Quota{MessagesPerHour: 3, MessagesPerDay: 5, RecipientsPerHour: 10}
	before := quotaCount(t, "user", "messages_per_hour")
	for i := range 3 {
		if e := q.Check(alice, lim, 1, 1); e != nil {
			t.Fatalf("message %d: %v", i, e)
		}
		q.Add(alice, 1, 2)
	}
	e := q.Check(alice, lim, 1, 1)
	if e == nil || e.Quota != "messages_per_hour" || e.Used != 3 || e.Limit != 3 {
		t.Fatalf("4th message in the hour: %+v", e)
	}
	r := e.Reply()
	if r.Code != 451 || r.EnhancedCode != [3]int{4, 7, 1} ||
		r.Message != "Sending quota exceeded: user alice may send 3 messages per hour and has sent 3 in the last hour, try again later" {
		t.Errorf("reply %d %v %q", r.Code, r.EnhancedCode, r.Message)
	}
	if e.Key() != "quotas.user.messages_per_hour" {
		t.Errorf("key %q", e.Key())
	}
	if quotaCount(t, "user", "messages_per_hour") != before+1 {
		t.Error("refusal not counted in inkan_quota_exceeded_total")
	}
	// Recipients: 6 used of 10; 5 more do not fit.
	if e := q.Check(alice, config.Quota{RecipientsPerHour: 10}, 1, 5); e == nil || e.Quota != "recipients_per_hour" {
		t.Errorf("recipients: %+v", e)
	}
	if e := q.Check(alice, config.Quota{RecipientsPerHour: 10}, 1, 4); e != nil {
		t.Errorf("recipients that fit: %v", e)
	}
	// An hour later the hour window has moved on, the day has not.
	clock.Advance(time.Hour)
	for range 2 {
		if e := q.Check(alice, lim, 1, 1); e != nil {
			t.Fatal(e)
		}
		q.Add(alice, 1, 1)
	}
	if e := q.Check(alice, lim, 1, 1); e == nil || e.Quota != "messages_per_day" || !strings.Contains(e.Error(), "5 messages per day and has sent 5 in the last day") {
		t.Fatalf("6th message in the day: %v", e)
	}
	// Other senders and zero limits are not affected.
	if e := q.Check(auth.Sender{Name: "bob"}, lim, 1, 1); e != nil {
		t.Error(e)
	}
	if e := q.Check(alice, config.Quota{}, 1, 1); e != nil {
		t.Error(e)
	}
	us := q.Usage()
	if len(us) != 1 || us[0].MessagesHour != 2 || us[0].MessagesDay != 5 || us[0].RecipientsDay != 8 || us[0].RecipientsHour != 2 {
		t.Fatalf("usage %+v", us)
	}
	// A day later everything is forgotten.
	clock.Advance(25 * time.Hour)
	if len(q.Usage()) != 0 {
		t.Errorf("usage after a day: %+v", q.Usage())
	}
	q.Add(auth.Sender{Network: true, Name: "printers"}, 1, 1)
	q.Add(auth.Sender{Name: "zed"}, 1, 1)
	us = q.Usage()
	if len(us) != 2 || us[0].Name != "zed" || us[1].String() != "network printers" {
		t.Errorf("users first, then networks: %+v", us)
	}
}

func TestQuotaFor(t *testing.T) {
	q := config.Quotas{
		User:      config.Quota{MessagesPerHour: 10},
		Network:   config.Quota{MessagesPerDay: 7},
		Overrides: []config.QuotaOverride{{User: "news", MessagesPerDay: 1000}, {Network: "printers", MessagesPerHour: 3}},
	}
	for _, tc := range []struct {
		name    string
		network bool
		want    config.Quota
	}{
		{"alice", false, config.Quota{MessagesPerHour: 10}},
		{"news", false, config.Quota{MessagesPerDay: 1000}},
		{"printers", false, config.Quota{MessagesPerHour: 10}},
		{"printers", true, config.Quota{MessagesPerHour: 3}},
		{"news", true, config.Quota{MessagesPerDay: 7}},
	} {
		if got := q.For(tc.name, tc.network); got != tc.want {
			t.Errorf("For(%q, %v) = %+v, want %+v", tc.name, tc.network, got, tc.want)
		}
	}
}
