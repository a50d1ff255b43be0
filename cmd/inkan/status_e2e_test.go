package main_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// A trusted network over its quota gets a 451 4.7.1 naming it, the log says
// which key lifts it, and `inkan status` shows who sent how much.
func TestQuotaAndStatusCommand(t *testing.T) {
	s := startSink(t)
	t.Setenv("INKAN_HTTP_STATUS", "true") // inherited by `inkan serve`
	in := startInkan(t, s.addr, "quotas:\n  network:\n    messages_per_hour: 2\n    recipients_per_day: 10\n")
	sendRaw(t, in.relay, "cron@example.com", []string{"a@example.net", "b@example.net"}, "Subject: 1\r\n\r\nx\r\n")
	sendRaw(t, in.relay, "cron@example.com", []string{"a@example.net"}, "Subject: 2\r\n\r\nx\r\n")
	c, err := smtp.Dial(in.relay)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Mail("cron@example.com", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) ||
		!strings.Contains(se.Message, "network trusted_networks may send 2 messages per hour and has sent 2") {
		t.Fatalf("third message: %v, want 451 4.7.1 naming the quota", err)
	}
	waitLog(t, in, "hint=\"sending quotas are new: raise quotas.network.messages_per_hour")
	if m := metric(t, in.http, `inkan_quota_exceeded_total{quota="messages_per_hour",scope="network"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("metric %q", m)
	}

	out, err := in.run("", "status")
	if err != nil {
		t.Fatalf("inkan status: %v\n%s", err, out)
	}
	for _, want := range []string{"SENDER", "network trusted_networks", "2/2 FULL", "3/10"} {
		if !strings.Contains(out, want) {
			t.Errorf("inkan status lacks %q:\n%s", want, out)
		}
	}
	resp, err := http.Get("http://" + in.http + "/status/senders")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Senders []struct {
			Scope, Name  string
			MessagesHour int `json:"messages_hour"`
			Quota        struct {
				MessagesPerHour int `json:"messages_per_hour"`
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Senders) != 1 || doc.Senders[0].Scope != "network" || doc.Senders[0].MessagesHour != 2 || doc.Senders[0].Quota.MessagesPerHour != 2 {
		t.Errorf("status document %+v", doc)
	}
}

// Without http.status the command says how to turn it on.
func TestStatusCommandWhenOff(t *testing.T) {
	s := startSink(t)
	in := startInkan(t, s.addr, "")
	out, err := in.run("", "status")
	if err == nil || !strings.Contains(out, "set http.status: true") {
		t.Fatalf("inkan status with http.status off: %v\n%s", err, out)
	}
}
