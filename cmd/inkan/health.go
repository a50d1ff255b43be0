package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/config"
)

// runHealth asks the local /readyz (images without curl use this).
func runHealth(args []string) int {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	cfgPath := fs.String("config", defaultConfigPath(), "config file, to find the http listener")
	url := fs.String("url", "", "URL to check (default: /readyz on the configured http listener)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *url == "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			printConfigError(os.Stderr, err)
			return 78
		}
		addrs := config.SplitAddrs(cfg.Listen.HTTP)
		if len(addrs) == 0 {
			fmt.Fprintln(os.Stderr, "health: the http listener is disabled (listen.http); pass -url")
			return 1
		}
		host, port, err := net.SplitHostPort(addrs[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, "health:", err)
			return 1
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		*url = "http://" + net.JoinHostPort(host, port) + "/readyz"
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "health:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "health: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	fmt.Println(strings.TrimSpace(string(body)))
	return 0
}
