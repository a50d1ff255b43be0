package signing

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// New loads every key and table named by cfg, once. Native keys (cfg.Keys)
// and OpenDKIM tables (cfg.KeyTable/SigningTable, or those named in
// cfg.OpenDKIMConf) may be combined; settings in the inkan configuration win
// over opendkim.conf. Any unreadable, unsafe (world-readable) or weak key is
// an error; softer problems are kept for Warnings.
func New(cfg config.DKIM, logger *slog.Logger) (*Signer, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Signer{log: logger}
	var od *config.OpenDKIMConf
	if cfg.OpenDKIMConf != "" {
		var err error
		if od, err = config.ParseOpenDKIMConf(cfg.OpenDKIMConf); err != nil {
			return nil, fmt.Errorf("dkim: %w", err)
		}
		s.warnOpenDKIM(od)
	}
	if err := s.setOptions(cfg, od); err != nil {
		return nil, err
	}
	if err := s.loadNative(cfg.Keys); err != nil {
		return nil, err
	}
	if err := s.loadSingle(od); err != nil {
		return nil, err
	}
	if err := s.loadTables(cfg, od); err != nil {
		return nil, err
	}
	s.checkAlignment()
	s.configured = map[string]bool{}
	for _, d := range s.domains {
		s.configured[d.Name] = true
	}
	if !s.Enabled() {
		s.warnings = append(s.warnings, "DKIM signing is not configured: mail leaves unsigned (add dkim.keys; see inkan dkim keygen)")
	}
	sort.Slice(s.domains, func(i, j int) bool {
		a, b := s.domains[i], s.domains[j]
		return a.Name < b.Name || (a.Name == b.Name && a.Selector < b.Selector)
	})
	for _, w := range s.warnings {
		logger.Warn("dkim configuration", "warning", w)
	}
	return s, nil
}

func (s *Signer) warnOpenDKIM(od *config.OpenDKIMConf) {
	for _, u := range od.Unsupported {
		s.warnings = append(s.warnings, "opendkim.conf setting not supported by inkan, ignored: "+u)
	}
	if n := od.InternalHostsNotice(); n != "" {
		s.warnings = append(s.warnings, n)
	}
	if od.Mode != "" && !strings.ContainsAny(od.Mode, "sS") {
		s.warnings = append(s.warnings, fmt.Sprintf("opendkim.conf Mode %q (%s) did not sign; inkan signs with the configured keys", od.Mode, od.Line["Mode"]))
	}
}

func (s *Signer) setOptions(cfg config.DKIM, od *config.OpenDKIMConf) error {
	canon := cfg.Canonicalization
	sign, over := cfg.SignHeaders, cfg.OversignHeaders
	var always []string
	exp := cfg.Expiration.D()
	if od != nil {
		if canon == "" {
			canon = od.Canonicalization
		}
		if len(sign) == 0 {
			sign = od.SignHeaders
		}
		if len(over) == 0 {
			over = od.OversignHeaders
			// OpenDKIM signs before the MTA adds them too; inkan leaves them
			// out rather than make signatures that never verify.
			over = slices.DeleteFunc(slices.Clone(over), func(name string) bool {
				if slices.ContainsFunc(config.AddedAfterSigning, func(a string) bool { return strings.EqualFold(a, name) }) {
					s.warnings = append(s.warnings, fmt.Sprintf("opendkim.conf OversignHeaders (%s) lists %s, which joins the message after signing: left out, or no signature would verify", od.Line["OversignHeaders"], name))
					return true
				}
				return false
			})
		}
		always = od.AlwaysSignHeaders
		if exp == 0 {
			exp = time.Duration(od.SignatureTTL) * time.Second
		}
	}
	h, b, err := parseCanonicalization(canon)
	if err != nil {
		return err
	}
	s.headerCan, s.bodyCan = h, b
	s.plan = newHeaderPlan(sign, over, always)
	if exp < 0 {
		return errors.New("dkim: expiration must not be negative")
	}
	s.expiration = exp
	return nil
}

// parseCanonicalization reads "header/body"; one word applies to the header
// with a simple body, as for the c= tag. Empty means relaxed/relaxed.
func parseCanonicalization(v string) (h, b dkim.Canonicalization, err error) {
	if strings.TrimSpace(v) == "" {
		return dkim.CanonicalizationRelaxed, dkim.CanonicalizationRelaxed, nil
	}
	hs, bs, ok := strings.Cut(strings.ToLower(strings.TrimSpace(v)), "/")
	if !ok {
		bs = "simple"
	}
	for _, x := range []string{hs, bs} {
		if x != "simple" && x != "relaxed" {
			return "", "", fmt.Errorf("dkim: canonicalization %q: %q is not simple or relaxed (fix: canonicalization: relaxed/relaxed)", v, x)
		}
	}
	return dkim.Canonicalization(hs), dkim.Canonicalization(bs), nil
}

func (s *Signer) loadNative(keys []config.DKIMKey) error {
	seen := map[string]int{}
	for i, kc := range keys {
		where := fmt.Sprintf("dkim.keys[%d]", i)
		d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(kc.Domain), "."))
		switch {
		case d == "":
			return fmt.Errorf("dkim: %s: domain is empty (fix: set domain: example.com)", where)
		case kc.Selector == "":
			return fmt.Errorf("dkim: %s: selector is empty (fix: set selector: to the name published as SELECTOR._domainkey.%s)", where, d)
		case kc.KeyFile == "":
			return fmt.Errorf("dkim: %s: key_file is empty (fix: inkan dkim keygen -d %s -s %s prints the path to use)", where, d, kc.Selector)
		}
		id := d + "/" + strings.ToLower(kc.Selector)
		if j, dup := seen[id]; dup {
			return fmt.Errorf("dkim: %s: d=%s s=%s is already dkim.keys[%d] (fix: give each key its own selector)", where, d, kc.Selector, j)
		}
		seen[id] = i
		signer, warns, err := LoadPrivateKey(kc.KeyFile)
		if err != nil {
			return fmt.Errorf("dkim: %s: %w", where, err)
		}
		s.warnings = append(s.warnings, warns...)
		k := &key{domain: d, selector: kc.Selector, signer: FastSigner(signer), algo: Algorithm(signer.Public()), file: kc.KeyFile, origin: where}
		r := &nativeRule{k: k, subdomains: kc.Subdomains}
		senders := kc.Senders
		if len(senders) == 0 {
			senders = []string{"@" + d}
		}
		for _, p := range senders {
			sp, err := parseSenderPattern(p)
			if err != nil {
				return fmt.Errorf("dkim: %s: senders: %v (fix: use alice@%s, @%s or *@%s)", where, err, d, d, d)
			}
			r.patterns = append(r.patterns, sp)
		}
		s.native = append(s.native, r)
		if err := s.addDomain(d, k); err != nil {
			return err
		}
	}
	return nil
}

// loadSingle handles opendkim.conf's single-key mode (Domain, Selector,
// KeyFile without a KeyTable). d= is the configured domain that matched, so
// that with SubDomains a From of a.example.com is signed d=example.com.
func (s *Signer) loadSingle(od *config.OpenDKIMConf) error {
	if od == nil || od.KeyTable != "" || (od.KeyFile == "" && od.Selector == "" && od.Domain == "") {
		return nil
	}
	origin := "opendkim.conf " + od.File
	if od.KeyFile == "" || od.Selector == "" || od.Domain == "" {
		return fmt.Errorf("dkim: %s: single-key mode needs Domain, Selector and KeyFile together (fix: add the missing ones, or use a KeyTable)", origin)
	}
	domains, err := od.Domains()
	if err != nil {
		return fmt.Errorf("dkim: %w", err)
	}
	signer, warns, err := LoadPrivateKey(od.KeyFile)
	if err != nil {
		return fmt.Errorf("dkim: %s KeyFile: %w", origin, err)
	}
	s.warnings = append(s.warnings, warns...)
	k := &key{domain: "%", selector: od.Selector, signer: FastSigner(signer), algo: Algorithm(signer.Public()), file: od.KeyFile, origin: origin}
	s.single = &singleRule{k: k, domains: domains, subdomains: od.SubDomains, origin: origin}
	for _, d := range domains {
		if err := s.addDomain(d, k); err != nil {
			return err
		}
	}
	return nil
}

func (s *Signer) loadTables(cfg config.DKIM, od *config.OpenDKIMConf) error {
	ktSpec, stSpec, multi, base := cfg.KeyTable, cfg.SigningTable, cfg.MultipleSignatures, ""
	if od != nil {
		if ktSpec == "" && stSpec == "" {
			ktSpec, stSpec, base = od.KeyTable, od.SigningTable, od.BaseDirectory
		}
		multi = multi || od.MultipleSignatures
	}
	if ktSpec == "" && stSpec == "" {
		return nil
	}
	if ktSpec == "" || stSpec == "" {
		return errors.New("dkim: key_table and signing_table go together (fix: set both, or use dkim.keys)")
	}
	entries, err := config.ParseKeyTable(ktSpec)
	if err != nil {
		return fmt.Errorf("dkim: %w", err)
	}
	st, err := config.ParseSigningTable(stSpec)
	if err != nil {
		return fmt.Errorf("dkim: %w", err)
	}
	s.warnings = append(s.warnings, st.Warnings...)
	t := &tableRules{entries: map[string]config.KeyTableEntry{}, st: st, multi: multi, baseDir: base,
		static: map[string]*key{}, dynamic: map[string]dynKey{},
		loadWarn: func(w string) { s.log.Warn("dkim key", "warning", w) }}
	used := map[string]bool{}
	for _, r := range st.Rules {
		used[r.KeyName] = true
	}
	for _, e := range entries {
		t.entries[e.Name] = e
	}
	// Until 2026 this was a warning and the mail went out unsigned, the
	// silent failure OpenDKIM migrants reported most; now start and reload
	// refuse it (a reload keeps the running configuration).
	if err := st.CheckKeyNames(entries, strings.TrimPrefix(strings.TrimPrefix(ktSpec, "refile:"), "file:")); err != nil {
		return fmt.Errorf("dkim: %w", err)
	}
	for _, e := range entries {
		if !used[e.Name] && !used["%"] {
			s.warnings = append(s.warnings, fmt.Sprintf("KeyTable %s:%d key %q (d=%s s=%s) is not used by any SigningTable line", e.File, e.Line, e.Name, e.Domain, e.Selector))
			continue
		}
		if err := s.loadEntry(t, e); err != nil {
			return err
		}
	}
	s.table = t
	return nil
}

// loadEntry loads a KeyTable entry's key now when its path is fixed, and for
// "%" entries the keys of the domains the SigningTable names literally.
func (s *Signer) loadEntry(t *tableRules, e config.KeyTableEntry) error {
	collect := func(warn string) { s.warnings = append(s.warnings, warn) }
	if e.Domain != "%" && !strings.Contains(e.KeyFile, "%") {
		k, err := loadTableKey(e, t.keyPath(e, e.Domain), collect)
		if err != nil {
			return fmt.Errorf("dkim: %w", err)
		}
		t.static[e.Name] = k
		return s.addDomain(e.Domain, k)
	}
	domains := []string{e.Domain}
	if e.Domain == "%" {
		domains = t.tableDomains(e.Name, collect)
	}
	for _, d := range domains {
		k, err := loadTableKey(e, t.keyPath(e, d), collect)
		if errors.Is(err, fs.ErrNotExist) {
			s.warnings = append(s.warnings, fmt.Sprintf("KeyTable %s:%d key %q: %v", e.File, e.Line, e.Name, err))
			t.remember(dynID(e, t.keyPath(e, d)), dynKey{nil, err})
			continue
		}
		if err != nil {
			return fmt.Errorf("dkim: %w", err)
		}
		t.remember(dynID(e, t.keyPath(e, d)), dynKey{k, nil})
		if err := s.addDomain(d, k); err != nil {
			return err
		}
	}
	return nil
}

// addDomain records a (d=, s=) pair for Domains.
func (s *Signer) addDomain(d string, k *key) error {
	for _, x := range s.domains {
		if x.Name == d && strings.EqualFold(x.Selector, k.selector) {
			return nil // the same key reached through several rules
		}
	}
	txt, err := PublicKeyRecord(k.signer.Public())
	if err != nil {
		return fmt.Errorf("dkim: %s: %w", k.origin, err)
	}
	s.domains = append(s.domains, Domain{Name: d, Selector: k.selector, Algorithm: k.algo,
		PublicKeyTXT: txt, KeyFile: k.file, PublicKey: k.signer.Public()})
	return nil
}

// checkAlignment warns about native keys configured to sign for domains that
// do not share the key's domain: such signatures never satisfy DMARC.
func (s *Signer) checkAlignment() {
	for i, r := range s.native {
		for _, p := range r.patterns {
			d := p.domain
			if p.exact != "" {
				d = mailsyntax.DomainOf(p.exact)
			}
			if d == "" {
				continue // a wildcard pattern; Explain reports per address
			}
			if d != r.k.domain && !strings.HasSuffix(d, "."+r.k.domain) {
				s.warnings = append(s.warnings, fmt.Sprintf("dkim.keys[%d] (d=%s) signs mail from %s: that signature will not align for DMARC; add a key for %s", i, r.k.domain, p.raw, d))
			}
		}
	}
}
