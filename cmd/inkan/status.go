package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
)

// statusPath is where the HTTP listener serves the quota usage.
const statusPath = "/status/senders"

// senderStatus is one sender in the /status/senders document.
type senderStatus struct {
	Scope          string      `json:"scope"` // "user" or "network"
	Name           string      `json:"name"`
	MessagesHour   int         `json:"messages_hour"`
	MessagesDay    int         `json:"messages_day"`
	RecipientsHour int         `json:"recipients_hour"`
	RecipientsDay  int         `json:"recipients_day"`
	Quota          quotaStatus `json:"quota"` // 0 = no limit
}

type quotaStatus struct {
	MessagesPerHour   int `json:"messages_per_hour"`
	MessagesPerDay    int `json:"messages_per_day"`
	RecipientsPerHour int `json:"recipients_per_hour"`
	RecipientsPerDay  int `json:"recipients_per_day"`
}

type statusDoc struct {
	Senders []senderStatus `json:"senders"`
}

// routeStatus adds /status/senders to the HTTP listener when http.status is
// on: it names users, so it is off by default.
func (d *daemon) routeStatus(mux *http.ServeMux, cfg *config.Config) {
	if cfg.HTTP.Status {
		mux.HandleFunc(statusPath, d.statusSenders)
	}
}

// statusSenders lists who sent how much in the last hour and day, with the
// quotas in force now.
func (d *daemon) statusSenders(w http.ResponseWriter, r *http.Request) {
	quotas := d.srv.Current().Config.Quotas
	doc := statusDoc{Senders: []senderStatus{}}
	for _, u := range d.srv.Quotas().Usage() {
		q := quotas.For(u.Name, u.Network)
		doc.Senders = append(doc.Senders, senderStatus{
			Scope: u.Scope(), Name: u.Name,
			MessagesHour: u.MessagesHour, MessagesDay: u.MessagesDay,
			RecipientsHour: u.RecipientsHour, RecipientsDay: u.RecipientsDay,
			Quota: quotaStatus(q),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(doc)
}

// runStatus shows who sent how much against the sending quotas, from the
// running inkan's HTTP listener.
func runStatus(args []string) int { return statusMain(args, os.Stdout, os.Stderr) }

func statusMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = cli.Usage(fs, "usage: inkan status [-config FILE] [-url URL] [-json]\n\nWho sent how much in the last hour and day, against the sending quotas\n(needs http.status: true on the running inkan).\n\nFlags:\n")
	cfgPath := configFlag(fs)
	url := fs.String("url", "", "URL of the status document (default: "+statusPath+" on the configured http listener)")
	asJSON := fs.Bool("json", false, "print the JSON document as it is")
	if status, ok := cli.Parse(fs, args, stdout, stderr); !ok {
		return status
	}
	if *url == "" {
		cfg, _, status := loadConfig(*cfgPath, stderr)
		if status != cli.ExitOK {
			return status
		}
		u, err := statusURL(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "status:", err)
			return 1
		}
		*url = u
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(*url)
	if err != nil {
		fmt.Fprintln(stderr, "status:", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		fmt.Fprintln(stderr, "status:", err)
		return 1
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		fmt.Fprintln(stderr, "status: the running inkan does not serve "+statusPath+
			": set http.status: true (or INKAN_HTTP_STATUS=true) and restart it")
		return 1
	case resp.StatusCode != http.StatusOK:
		fmt.Fprintf(stderr, "status: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	if *asJSON {
		stdout.Write(body)
		return 0
	}
	var doc statusDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		fmt.Fprintln(stderr, "status: not a status document:", err)
		return 1
	}
	printStatus(stdout, doc)
	return 0
}

// statusURL is statusPath on the first address of listen.http.
func statusURL(cfg *config.Config) (string, error) {
	addrs := config.SplitAddrs(cfg.Listen.HTTP)
	if len(addrs) == 0 {
		return "", fmt.Errorf("the http listener is disabled (listen.http); pass -url")
	}
	host, port, err := net.SplitHostPort(addrs[0])
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + statusPath, nil
}

// printStatus writes one line per sender: sent/limit in the last hour and
// day ("-" for no limit).
func printStatus(w io.Writer, doc statusDoc) {
	if len(doc.Senders) == 0 {
		fmt.Fprintln(w, "No mail accepted in the last day.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SENDER\tMESSAGES 1H\tMESSAGES 24H\tRECIPIENTS 1H\tRECIPIENTS 24H\t")
	of := func(n, limit int) string {
		if limit <= 0 {
			return fmt.Sprintf("%d/-", n)
		}
		mark := ""
		if n >= limit {
			mark = " FULL"
		}
		return fmt.Sprintf("%d/%d%s", n, limit, mark)
	}
	for _, s := range doc.Senders {
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\t%s\t\n", s.Scope, s.Name,
			of(s.MessagesHour, s.Quota.MessagesPerHour), of(s.MessagesDay, s.Quota.MessagesPerDay),
			of(s.RecipientsHour, s.Quota.RecipientsPerHour), of(s.RecipientsDay, s.Quota.RecipientsPerDay))
	}
	tw.Flush()
}
