package main

import (
	"reflect"
	"strings"
	"testing"
)

// The command lines cron, PHP, Symfony, monitoring scripts and MTAs pass,
// read as Postfix's getopt reads them.
func TestParseSendmailArgs(t *testing.T) {
	t.Setenv("INKAN_SENDMAIL_SERVER", "")
	for _, tc := range []struct {
		args []string
		want sendmailOpts
	}{
		{[]string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"},
			sendmailOpts{mode: "m", fullName: "CronDaemon", fullNameSet: true, ignoreDots: true, rcpts: []string{"root"}}},
		{[]string{"-t", "-i", "-f", "www@example.com"},
			sendmailOpts{mode: "m", fromHeaderRcpts: true, ignoreDots: true, from: "www@example.com", fromSet: true}},
		{[]string{"-ti", "-fwww@example.com", "a@example.net"}, // grouped, attached value
			sendmailOpts{mode: "m", fromHeaderRcpts: true, ignoreDots: true, from: "www@example.com", fromSet: true, rcpts: []string{"a@example.net"}}},
		{[]string{"-oi", "-r", "<>", "a@example.net"},
			sendmailOpts{mode: "m", ignoreDots: true, fromSet: true, rcpts: []string{"a@example.net"}}},
		{[]string{"-bs"}, sendmailOpts{mode: "s"}},
		{[]string{"-bp"}, sendmailOpts{mode: "p"}},
		{[]string{"-bv", "a@example.net"}, sendmailOpts{mode: "v", rcpts: []string{"a@example.net"}}},
		{[]string{"-bi"}, sendmailOpts{mode: "i"}},
		{[]string{"-I"}, sendmailOpts{mode: "i"}},
		{[]string{"-q"}, sendmailOpts{mode: "q"}},
		{[]string{"-q30m"}, sendmailOpts{mode: "q", queueArg: "30m"}},
		{[]string{"-N", "success,delay", "-R", "hdrs", "-V", "env-1", "a@example.net"},
			sendmailOpts{mode: "m", notify: []string{"SUCCESS", "DELAY"}, ret: "HDRS", envID: "env-1", rcpts: []string{"a@example.net"}}},
		{[]string{"-Nnever", "a@example.net"}, sendmailOpts{mode: "m", notify: []string{"NEVER"}, rcpts: []string{"a@example.net"}}},
		{[]string{"-G", "-h", "17", "-L", "label", "-O", "x=y", "-U", "-m", "-n", "--", "-odd@example.net"},
			sendmailOpts{mode: "m", rcpts: []string{"-odd@example.net"}}},
		{[]string{"-C", "/etc/x.yaml", "-server", "h:25", "a@example.net"},
			sendmailOpts{mode: "m", configPath: "/etc/x.yaml", server: "h:25", redirects: []string{"-C", "-server"}, rcpts: []string{"a@example.net"}}},
	} {
		got, err := parseSendmailArgs(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.args, *got, tc.want)
		}
	}
}

func TestParseSendmailArgsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-k"}, "unsupported option -k"},
		{[]string{"-bd"}, "inkan serve"},
		{[]string{"-bz"}, "unsupported: -bz"},
		{[]string{"-f"}, "-f needs a value"},
		{[]string{"-X", "/tmp/log"}, "unsupported option -X"},
	} {
		if _, err := parseSendmailArgs(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	// Bad DSN values are ignored with a warning, as Postfix does.
	o, err := parseSendmailArgs([]string{"-N", "sometimes", "-R", "body", "-V", strings.Repeat("x", 101), "a@example.net"})
	if err != nil || o.notify != nil || o.ret != "" || o.envID != "" || len(o.warnings) != 3 {
		t.Errorf("bad DSN values: %+v, %v; want them ignored with 3 warnings", o, err)
	}
}

func TestStripBcc(t *testing.T) {
	msg := []byte("To: a@example.net\r\nBcc: b@example.net,\r\n c@example.net\r\nresent-bcc: d@example.net\r\nSubject: x\r\n\r\nBcc: in the body stays\r\n")
	got := string(stripBcc(msg, strings.Index(string(msg), "\r\n\r\n")))
	want := "To: a@example.net\r\nSubject: x\r\n\r\nBcc: in the body stays\r\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
