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

	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
)

// runHealth asks the local /readyz (images without curl use this).
func runHealth(args []string) int {
	fs := flag.NewFlagSet("inkan health", flag.ContinueOnError)
	fs.Usage = cli.Usage(fs, "usage: inkan health [-config FILE] [-url URL]\n\nExits 0 when the local inkan answers ready on /readyz (listeners bound, queue\nwritable, keys loaded), 1 otherwise: the container HEALTHCHECK.\n\nFlags:\n")
	cfgPath := configFlag(fs)
	url := fs.String("url", "", "URL to check (default: /readyz on the configured http listener)")
	if status, ok := cli.Parse(fs, args, os.Stdout, os.Stderr); !ok {
		return status
	}
	if *url == "" {
		cfg, _, status := loadConfig(*cfgPath, os.Stderr)
		if status != cli.ExitOK {
			return status
		}
		addrs := config.SplitAddrs(cfg.Listen.HTTP)
		if len(addrs) == 0 {
			fmt.Fprintln(os.Stderr, "inkan health: the http listener is disabled (listen.http); set it, or pass -url")
			return cli.ExitConfig
		}
		host, port, err := net.SplitHostPort(addrs[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, "inkan health:", err)
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
		fmt.Fprintln(os.Stderr, "inkan health:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "inkan health: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	fmt.Println(strings.TrimSpace(string(body)))
	return 0
}
