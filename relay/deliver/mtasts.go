package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/queue/safefile"
	"github.com/inkan-relay/inkan/relay/deliver/tlsrecords"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// MTA-STS (RFC 8461): discovery, fetching and the policy cache.
//
// Promises:
//   - A policy is used until its max_age runs out, counted from the last
//     time it was fetched; each is kept in DataDir/mta-sts/DOMAIN.json,
//     written through safefile, so it survives restarts.
//   - The _mta-sts TXT record is looked up at each delivery (through the
//     DNS cache). A new id fetches the policy; a failed fetch, a missing
//     record or a DNS failure keeps using the cached policy while it lasts
//     (section 5.1): an attacker who blocks the policy server or strips the
//     TXT record cannot downgrade a domain inkan already knows.
//   - With no cached policy, a failed fetch means no policy (section 3.3),
//     and is counted for the domain's TLS report.
//   - The fetch uses HTTPS with a certificate valid for mta-sts.DOMAIN (the
//     system roots, or Options.RootCAs), follows no redirect, reads at most
//     64 KiB, takes at most stsFetchTimeout, and needs text/plain.
//   - Cached policies fetched more than stsRefreshAfter ago are fetched
//     again in the background before they expire; expired ones are removed.

var (
	stsHTTPSPort    = "443" // tests serve policies elsewhere
	stsFetchTimeout = 20 * time.Second
	stsRefreshAfter = 24 * time.Hour // or half the max_age, if shorter
	stsRefreshEvery = time.Hour      // how often the cache is walked
)

const stsMaxCached = 10000 // policies kept in memory (and on disk)

// stsPolicy is a policy in force for a domain.
type stsPolicy struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"`
	Body    string    `json:"policy"`  // as fetched
	Fetched time.Time `json:"fetched"` // last successful fetch
	Expires time.Time `json:"expires"` // Fetched + max_age

	p *tlsrecords.STSPolicy
}

// describe names the policy in replies: "MTA-STS policy of example.com
// (enforce, id 2024a)".
func (s *stsPolicy) describe() string {
	return fmt.Sprintf("MTA-STS policy of %s (%s, id %s)", s.Domain, s.p.Mode, s.ID)
}

// stsFailure is why a policy could not be fetched, as TLS-RPT names it.
type stsFailure struct {
	kind string // sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid
	err  error
}

func (f *stsFailure) Error() string { return f.err.Error() }

// stsCache finds, fetches and keeps MTA-STS policies.
type stsCache struct {
	dir    string // "" = memory only
	res    *resolver
	client *http.Client
	log    *slog.Logger

	mu       sync.Mutex
	m        map[string]*stsPolicy // by domain; nil value = none on disk either
	fetching map[string]chan struct{}
}

func newSTSCache(dir string, res *resolver, roots *x509.CertPool, log *slog.Logger) *stsCache {
	c := &stsCache{dir: dir, res: res, log: log, m: map[string]*stsPolicy{}, fetching: map[string]chan struct{}{}}
	// The policy host is resolved like MX hosts, and only port 443 is dialled.
	c.client = policyHTTPClient(res, roots, stsFetchTimeout, stsHTTPSPort)
	if dir != "" {
		c.loadAll()
	}
	return c
}

// policy returns the policy in force for domain (nil: none), and why a new
// policy could not be fetched (nil: it could, or no fetch was needed).
func (c *stsCache) policy(ctx context.Context, domain string) (*stsPolicy, *stsFailure) {
	q, f := queryName(domain)
	if f != nil {
		return nil, nil
	}
	domain = mailsyntax.NormDomain(q)
	if mailsyntax.CheckDomain(domain, mailsyntax.HostName|mailsyntax.Underscore) != nil {
		return nil, nil // not a name a policy (or a cache file) can be for
	}
	cached := c.get(domain)
	rec, err := c.record(ctx, domain)
	switch {
	case err != nil:
		// No record, a broken one or a DNS failure: keep what we have.
		if !errors.Is(err, tlsrecords.ErrNoRecord) && !errors.Is(err, errNXDomain) {
			c.log.Debug("MTA-STS record unusable; using the cached policy if any", "domain", domain, "err", err)
		}
		return cached, nil
	case cached != nil && cached.ID == rec.ID:
		return cached, nil
	}
	p, fail := c.fetch(ctx, domain, rec.ID)
	if fail != nil {
		c.log.Warn("MTA-STS policy fetch failed", "domain", domain, "id", rec.ID, "err", fail.err,
			"using", map[bool]string{true: "the cached policy", false: "no policy"}[cached != nil])
		return cached, fail
	}
	return p, nil
}

// record reads the _mta-sts TXT record of domain.
func (c *stsCache) record(ctx context.Context, domain string) (tlsrecords.STSRecord, error) {
	rrs, err := c.res.lookup(ctx, "_mta-sts."+domain, dns.TypeTXT)
	if err != nil {
		return tlsrecords.STSRecord{}, err
	}
	return tlsrecords.FindSTSRecord(txtStrings(rrs))
}

// txtStrings joins the strings of each TXT record.
func txtStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out
}

// get returns the unexpired cached policy of domain, or nil.
func (c *stsCache) get(domain string) *stsPolicy {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.m[domain]
	if p != nil && !now().Before(p.Expires) {
		delete(c.m, domain)
		c.remove(domain)
		return nil
	}
	return p
}

// fetch gets the policy of domain over HTTPS and caches it; concurrent
// fetches of one domain wait for the first.
func (c *stsCache) fetch(ctx context.Context, domain, id string) (*stsPolicy, *stsFailure) {
	c.mu.Lock()
	if ch, busy := c.fetching[domain]; busy {
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, &stsFailure{"sts-policy-fetch-error", ctx.Err()}
		}
		if p := c.get(domain); p != nil && p.ID == id {
			return p, nil
		}
		return nil, &stsFailure{"sts-policy-fetch-error", errors.New("a concurrent fetch failed")}
	}
	ch := make(chan struct{})
	c.fetching[domain] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.fetching, domain)
		c.mu.Unlock()
		close(ch)
	}()

	body, fail := c.download(ctx, domain)
	if fail != nil {
		return nil, fail
	}
	parsed, err := tlsrecords.ParseSTSPolicy(body)
	if err != nil {
		return nil, &stsFailure{"sts-policy-invalid", fmt.Errorf("policy of %s: %v", domain, err)}
	}
	t := now()
	p := &stsPolicy{Domain: domain, ID: id, Body: string(body), Fetched: t, Expires: t.Add(parsed.MaxAge), p: parsed}
	c.put(p)
	c.log.Info("MTA-STS policy fetched", "domain", domain, "id", id, "mode", string(parsed.Mode), "max_age", parsed.MaxAge.String())
	return p, nil
}

// download reads https://mta-sts.DOMAIN/.well-known/mta-sts.txt.
func (c *stsCache) download(ctx context.Context, domain string) ([]byte, *stsFailure) {
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	ctx, cancel := context.WithTimeout(ctx, stsFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, &stsFailure{"sts-policy-fetch-error", err}
	}
	req.Header.Set("User-Agent", "inkan MTA-STS")
	resp, err := c.client.Do(req)
	if err != nil {
		kind := "sts-policy-fetch-error"
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			kind = "sts-webpki-invalid"
		}
		return nil, &stsFailure{kind, fmt.Errorf("fetch %s: %v", url, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &stsFailure{"sts-policy-fetch-error", fmt.Errorf("fetch %s: HTTP status %s", url, resp.Status)}
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, &stsFailure{"sts-policy-invalid", fmt.Errorf("fetch %s: Content-Type %q is not text/plain", url, resp.Header.Get("Content-Type"))}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, tlsrecords.MaxPolicySize+1))
	if err != nil {
		return nil, &stsFailure{"sts-policy-fetch-error", fmt.Errorf("fetch %s: %v", url, err)}
	}
	if len(body) > tlsrecords.MaxPolicySize {
		return nil, &stsFailure{"sts-policy-invalid", fmt.Errorf("fetch %s: policy larger than %d bytes", url, tlsrecords.MaxPolicySize)}
	}
	return body, nil
}

// refresh fetches again the policies fetched long enough ago, and drops the
// expired ones. A failure keeps the old policy until it expires.
func (c *stsCache) refresh(ctx context.Context) {
	t := now()
	var due []*stsPolicy
	c.mu.Lock()
	for d, p := range c.m {
		switch {
		case !t.Before(p.Expires):
			delete(c.m, d)
			c.remove(d)
		case t.Sub(p.Fetched) >= min(stsRefreshAfter, p.p.MaxAge/2):
			due = append(due, p)
		}
	}
	c.mu.Unlock()
	for _, p := range due {
		if ctx.Err() != nil {
			return
		}
		id := p.ID
		if rec, err := c.record(ctx, p.Domain); err == nil {
			id = rec.ID
		}
		if _, fail := c.fetch(ctx, p.Domain, id); fail != nil {
			c.log.Warn("MTA-STS policy refresh failed; the cached one stays until it expires", "domain", p.Domain,
				"expires", p.Expires.UTC().Format(time.RFC3339), "err", fail.err)
		}
	}
}

// put caches p in memory and on disk.
func (c *stsCache) put(p *stsPolicy) {
	c.mu.Lock()
	if _, ok := c.m[p.Domain]; !ok && len(c.m) >= stsMaxCached {
		c.evict()
	}
	c.m[p.Domain] = p
	c.mu.Unlock()
	if c.dir == "" {
		return
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err == nil {
		if err = os.MkdirAll(c.dir, 0o700); err == nil {
			err = safefile.WriteFile(c.path(p.Domain), append(b, '\n'), 0o600)
		}
	}
	if err != nil {
		c.log.Error("cannot save MTA-STS policy; it is used but not kept across restarts", "domain", p.Domain, "err", err)
	}
}

// evict drops the policy closest to expiry. c.mu is held.
func (c *stsCache) evict() {
	var oldest *stsPolicy
	for _, p := range c.m {
		if oldest == nil || p.Expires.Before(oldest.Expires) {
			oldest = p
		}
	}
	if oldest != nil {
		delete(c.m, oldest.Domain)
		c.remove(oldest.Domain)
	}
}

func (c *stsCache) path(domain string) string { return filepath.Join(c.dir, domain+".json") }

// remove deletes a policy file; a failure only means a stale file, which is
// ignored when read since it has expired.
func (c *stsCache) remove(domain string) {
	if c.dir != "" {
		os.Remove(c.path(domain))
	}
}

// loadAll reads the cached policies; broken or expired files are removed,
// and logged.
func (c *stsCache) loadAll() {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("cannot read the MTA-STS policy cache; starting empty", "dir", c.dir, "err", err)
		}
		return
	}
	t := now()
	for _, e := range entries {
		domain, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		p, err := c.load(domain)
		switch {
		case err != nil:
			c.log.Warn("broken MTA-STS cache file removed", "file", c.path(domain), "err", err)
			c.remove(domain)
		case !t.Before(p.Expires):
			c.remove(domain)
		case len(c.m) < stsMaxCached:
			c.m[domain] = p
		}
	}
}

func (c *stsCache) load(domain string) (*stsPolicy, error) {
	b, err := os.ReadFile(c.path(domain))
	if err != nil {
		return nil, err
	}
	p := new(stsPolicy)
	if err := json.Unmarshal(b, p); err != nil {
		return nil, err
	}
	if p.Domain != domain {
		return nil, fmt.Errorf("file names %q", p.Domain)
	}
	if p.p, err = tlsrecords.ParseSTSPolicy([]byte(p.Body)); err != nil {
		return nil, err
	}
	// A max_age shortened by hand in the file is honoured; a longer one not.
	if limit := p.Fetched.Add(p.p.MaxAge); p.Expires.After(limit) {
		p.Expires = limit
	}
	return p, nil
}

// startPolicyRefresh runs the cache's refresh until Close.
func (t *Transport) startPolicyRefresh() {
	c := t.pol.sts
	if c == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		<-t.stop
		cancel()
	}()
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(stsRefreshEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				c.refresh(ctx)
			}
		}
	}()
}
