package main_test

import (
	"encoding/xml"
	"net/http"
	"testing"
	"time"
)

// autoconfigUsers returns the user names the autoconfig document offers for
// SMTP and IMAP.
func autoconfigUsers(t *testing.T, httpAddr string) (smtp []string, imap string) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40example.com")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Incoming []struct {
			Username string `xml:"username"`
		} `xml:"emailProvider>incomingServer"`
		Outgoing []struct {
			Username string `xml:"username"`
		} `xml:"emailProvider>outgoingServer"`
	}
	if err := xml.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for _, o := range doc.Outgoing {
		smtp = append(smtp, o.Username)
	}
	if len(doc.Incoming) > 0 {
		imap = doc.Incoming[0].Username
	}
	return smtp, imap
}

// The README's walk-through creates the user "alice": Thunderbird must be
// told to log in as "alice" (%EMAILLOCALPART%), not as the address, or it
// gets 535. With users named by address, or http.autoconfig_username set,
// the document says so.
func TestAutoconfigUsernameFollowsUsers(t *testing.T) {
	s := startSink(t)
	in := startInkan(t, s.addr, "")
	if smtp, _ := autoconfigUsers(t, in.http); smtp[0] != "%EMAILADDRESS%" {
		t.Errorf("no users: %v, want %%EMAILADDRESS%%", smtp)
	}
	if out, err := in.run("a long random password\n", "user", "add", "bob@example.com"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	if out, err := in.run("a long random password\n", "user", "add", "alice"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		smtp, imap := autoconfigUsers(t, in.http)
		if len(smtp) == 2 && smtp[0] == "%EMAILLOCALPART%" && smtp[1] == "%EMAILLOCALPART%" && imap == "%EMAILADDRESS%" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("users file with alice: SMTP %v IMAP %q, want %%EMAILLOCALPART%% for SMTP", smtp, imap)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The setting decides for SMTP and IMAP alike.
	t.Setenv("INKAN_HTTP_AUTOCONFIG_USERNAME", "localpart")
	set := startInkan(t, s.addr, "")
	if smtp, imap := autoconfigUsers(t, set.http); smtp[0] != "%EMAILLOCALPART%" || imap != "%EMAILLOCALPART%" {
		t.Errorf("autoconfig_username: localpart: SMTP %v IMAP %q", smtp, imap)
	}
}
