package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// OpenDKIMPos is where a setting was read: file and line.
type OpenDKIMPos struct {
	File string
	Line int
}

func (p OpenDKIMPos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// OpenDKIMConf is the part of opendkim.conf(5) that matters to a signer.
// Relative paths are already resolved against BaseDirectory, as OpenDKIM
// does after its chdir.
type OpenDKIMConf struct {
	File               string
	KeyTable           string   // data set spec, e.g. "refile:/etc/opendkim/KeyTable"
	SigningTable       string   // data set spec
	InternalHosts      string   // data set spec; read it with ParseHostList
	ExternalIgnoreList string   // data set spec
	Canonicalization   string   // as written: "relaxed/simple", "relaxed", ""
	OversignHeaders    []string // header names
	SignHeaders        []string // header names; nil = signer default
	AlwaysSignHeaders  []string // header names signed even when absent
	MultipleSignatures bool
	SubDomains         bool   // single-key mode only
	Domain             string // single-key mode: data set of domains; see Domains
	Selector           string // single-key mode
	KeyFile            string // single-key mode
	Mode               string // "sv" when unset
	SignatureAlgorithm string // as written; the key type decides in inkan
	SignatureTTL       int    // seconds; 0 = no x= tag
	BaseDirectory      string
	RequireSafeKeys    bool     // default true, as in OpenDKIM
	Unsupported        []string // signing-related settings inkan ignores: "Name (file:line)"
	// Line says where each setting (canonical name, e.g. "KeyTable") was read.
	Line map[string]OpenDKIMPos
}

// opendkimUnsupported are opendkim.conf settings that change what gets signed
// and that inkan does not implement; they are reported, not silently dropped.
var opendkimUnsupported = map[string]bool{
	"selectorheader": true, "setuppolicyscript": true, "senderheaders": true, "bodylengths": true,
	"maximumsignedbytes": true, "diagnostics": true, "dontsignmailto": true, "exemptdomains": true,
	"omitheaders": true, "resignmailto": true, "resignall": true, "removeoldsignatures": true,
	"sendermacro": true, "identityheader": true, "macrolist": true, "mta": true, "peerlist": true,
	"localadsp": true, "atpsdomains": true,
}

// opendkimNames maps lower-case parameter names to their canonical spelling.
var opendkimNames = map[string]string{}

func init() {
	for _, n := range []string{"KeyTable", "SigningTable", "InternalHosts", "ExternalIgnoreList", "Canonicalization",
		"OversignHeaders", "SignHeaders", "AlwaysSignHeaders", "MultipleSignatures", "SubDomains", "Domain",
		"Selector", "KeyFile", "Mode", "SignatureAlgorithm", "SignatureTTL", "BaseDirectory", "RequireSafeKeys", "Include"} {
		opendkimNames[strings.ToLower(n)] = n
	}
}

// ParseOpenDKIMConf reads opendkim.conf (following Include, five levels deep
// at most, like OpenDKIM) and the header-name data sets it names.
func ParseOpenDKIMConf(path string) (*OpenDKIMConf, error) {
	c := &OpenDKIMConf{File: path, RequireSafeKeys: true, Line: map[string]OpenDKIMPos{}}
	raw := map[string]string{}
	if err := opendkimReadConf(path, 0, c, raw); err != nil {
		return nil, err
	}
	if err := c.apply(raw); err != nil {
		return nil, err
	}
	return c, nil
}

func opendkimReadConf(path string, depth int, c *OpenDKIMConf, raw map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &OpenDKIMError{File: path, Problem: "cannot read OpenDKIM configuration: " + opendkimIOReason(err),
			Fix: "check opendkim_conf in the inkan configuration", Err: err}
	}
	return opendkimLines(data, path, func(n int, key, value string) error {
		lk := strings.ToLower(key)
		name, known := opendkimNames[lk]
		if !known {
			if opendkimUnsupported[lk] {
				c.Unsupported = append(c.Unsupported, fmt.Sprintf("%s (%s:%d)", key, path, n))
			}
			return nil // everything else (Socket, Syslog, UMask...) is milter plumbing
		}
		if name == "Include" {
			if depth >= 5 {
				return &OpenDKIMError{File: path, Line: n, Problem: "Include nested more than five levels", Fix: "flatten the included files"}
			}
			return opendkimReadConf(value, depth+1, c, raw)
		}
		raw[name] = value
		c.Line[name] = OpenDKIMPos{File: path, Line: n}
		return nil
	})
}

func (c *OpenDKIMConf) apply(raw map[string]string) error {
	bad := func(name, problem, fix string) error {
		p := c.Line[name]
		return &OpenDKIMError{File: p.File, Line: p.Line, Problem: name + ": " + problem, Fix: fix}
	}
	boolean := func(name string, def bool) (bool, error) {
		v, ok := raw[name]
		if !ok {
			return def, nil
		}
		if v != "" {
			switch v[0] { // OpenDKIM only looks at the first byte
			case 'T', 't', 'Y', 'y', '1':
				return true, nil
			case 'F', 'f', 'N', 'n', '0':
				return false, nil
			}
		}
		return false, bad(name, fmt.Sprintf("%q is not a boolean", v), "write yes or no")
	}
	var err error
	c.BaseDirectory = raw["BaseDirectory"]
	c.KeyTable = c.resolveSpec(raw["KeyTable"])
	c.SigningTable = c.resolveSpec(raw["SigningTable"])
	c.InternalHosts = c.resolveSpec(raw["InternalHosts"])
	c.ExternalIgnoreList = c.resolveSpec(raw["ExternalIgnoreList"])
	c.Canonicalization = raw["Canonicalization"]
	c.Domain = c.resolveSpec(raw["Domain"])
	c.Selector = raw["Selector"]
	c.KeyFile = c.resolvePath(raw["KeyFile"])
	c.Mode = raw["Mode"]
	c.SignatureAlgorithm = raw["SignatureAlgorithm"]
	if c.MultipleSignatures, err = boolean("MultipleSignatures", false); err != nil {
		return err
	}
	if c.SubDomains, err = boolean("SubDomains", false); err != nil {
		return err
	}
	if c.RequireSafeKeys, err = boolean("RequireSafeKeys", true); err != nil {
		return err
	}
	if v, ok := raw["SignatureTTL"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return bad("SignatureTTL", fmt.Sprintf("%q is not a number of seconds", v), "write e.g. SignatureTTL 604800")
		}
		c.SignatureTTL = n
	}
	if cz := c.Canonicalization; cz != "" {
		h, b, _ := strings.Cut(strings.ToLower(cz), "/")
		if (h != "simple" && h != "relaxed") || (b != "" && b != "simple" && b != "relaxed") {
			return bad("Canonicalization", fmt.Sprintf("%q is not simple or relaxed", cz), "write relaxed/relaxed")
		}
	}
	for name, dst := range map[string]*[]string{"OversignHeaders": &c.OversignHeaders,
		"SignHeaders": &c.SignHeaders, "AlwaysSignHeaders": &c.AlwaysSignHeaders} {
		v, ok := raw[name]
		if !ok {
			continue
		}
		list, err := ParseOpenDKIMDataset(c.resolveSpec(v))
		if err != nil {
			return bad(name, err.Error(), "list header names separated by commas, e.g. From,Subject")
		}
		*dst = list
	}
	if c.KeyTable != "" && (c.Domain != "" || c.KeyFile != "" || c.Selector != "") {
		// OpenDKIM ignores Domain/KeyFile/Selector when a KeyTable is set; say so.
		c.Unsupported = append(c.Unsupported, "Domain/KeyFile/Selector ignored because KeyTable is set ("+c.Line["KeyTable"].String()+")")
		c.Domain, c.KeyFile, c.Selector = "", "", ""
	}
	if c.SigningTable != "" && c.KeyTable == "" {
		return bad("SigningTable", "a SigningTable needs a KeyTable", "add a KeyTable line naming the keys the SigningTable refers to")
	}
	return nil
}

// InternalHostsNotice explains what becomes of an InternalHosts setting, or
// returns "" when there is none. In OpenDKIM it picks the clients whose mail
// is signed rather than verified; whether they may relay is the MTA's
// business (Postfix's mynetworks). inkan signs everything it accepts, from
// AUTH users and trusted networks, so InternalHosts changes nothing here; it
// is not turned into trusted networks, which would let those hosts relay
// without AUTH (inkan did that until 2026-12).
func (c *OpenDKIMConf) InternalHostsNotice() string {
	if c.InternalHosts == "" {
		return ""
	}
	where := c.Line["InternalHosts"].String()
	listed := "the hosts listed there"
	if hosts, err := ParseHostList(c.InternalHosts); err != nil {
		listed += " (unreadable: " + err.Error() + ")"
	} else if len(hosts) > 0 {
		listed = strings.Join(hosts, ", ")
	}
	return fmt.Sprintf("opendkim.conf InternalHosts (%s) only chooses whose mail OpenDKIM signs; inkan signs all mail it accepts and "+
		"does not let %s relay without AUTH (inkan before 2026-12 did). To keep that, add them to auth.trusted_networks "+
		"(addresses, ranges or host names: a domain suffix such as .example.com matches no client), or have those clients authenticate", where, listed)
}

// Domains returns the single-key mode Domain data set.
func (c *OpenDKIMConf) Domains() ([]string, error) {
	if c.Domain == "" {
		return nil, nil
	}
	list, err := ParseOpenDKIMDataset(c.Domain)
	if err != nil {
		return nil, err
	}
	for i, d := range list {
		list[i] = strings.ToLower(d)
		if err := mailsyntax.CheckDomain(list[i], mailsyntax.SigningDomain); err != nil {
			p := c.Line["Domain"]
			return nil, &OpenDKIMError{File: p.File, Line: p.Line, Problem: fmt.Sprintf("Domain: %q is not a domain name (%v)", d, err),
				Fix: "list domains separated by commas, e.g. example.com,example.org"}
		}
	}
	return list, nil
}

// resolveSpec resolves a data set's file path against BaseDirectory.
func (c *OpenDKIMConf) resolveSpec(spec string) string {
	if spec == "" || c.BaseDirectory == "" {
		return spec
	}
	for _, p := range []string{"file:", "refile:"} {
		if strings.HasPrefix(spec, p) {
			return p + c.resolvePath(spec[len(p):])
		}
	}
	return spec // a bare value is either absolute (a file) or a comma-separated list
}

func (c *OpenDKIMConf) resolvePath(p string) string {
	if p == "" || c.BaseDirectory == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.BaseDirectory, p)
}

// ParseOpenDKIMDataset reads an OpenDKIM data set used as a plain list: a
// "file:"/"refile:" path or a value starting with '/' is a file with one
// entry per line (comments '#'), anything else is a comma-separated list
// ("csl:" prefix optional).
func ParseOpenDKIMDataset(spec string) ([]string, error) {
	spec = strings.TrimSpace(spec)
	lower := strings.ToLower(spec)
	isFile := strings.HasPrefix(spec, "/") || strings.HasPrefix(lower, "file:") || strings.HasPrefix(lower, "refile:")
	if spec == "" {
		return nil, nil
	}
	if !isFile {
		if strings.HasPrefix(lower, "csl:") {
			spec = spec[len("csl:"):]
		} else if _, _, err := opendkimTableSpec("data set", spec, true); err != nil {
			return nil, err // "dsn:...", "ldap:..." and friends
		}
		var out []string
		for _, v := range strings.Split(spec, ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
		return out, nil
	}
	_, file, err := opendkimTableSpec("data set", spec, true)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &OpenDKIMError{File: file, Problem: "cannot read list: " + opendkimIOReason(err), Fix: "check the path", Err: err}
	}
	var out []string
	err = opendkimLines(data, file, func(_ int, key, _ string) error {
		out = append(out, key)
		return nil
	})
	return out, err
}

// ParseHostList reads an InternalHosts / ExternalIgnoreList / PeerList data
// set and returns normalised entries: "192.0.2.7", "2001:db8::/32",
// "10.0.0.0/8", host names ("mail.example.com") and domain suffixes
// (".example.com", also written "*.example.com"), which match any host name
// under that domain. OpenDKIM's "!" negations are not supported and are
// refused, as are inet_addr(3) short forms like "192.0.2/24".
func ParseHostList(path string) ([]string, error) {
	spec := strings.TrimSpace(path)
	var (
		entries []string
		lines   []int
		file    = spec
	)
	if strings.HasPrefix(spec, "/") || strings.HasPrefix(strings.ToLower(spec), "file:") || strings.HasPrefix(strings.ToLower(spec), "refile:") {
		_, f, err := opendkimTableSpec("host list", spec, true)
		if err != nil {
			return nil, err
		}
		file = f
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, &OpenDKIMError{File: f, Problem: "cannot read host list: " + opendkimIOReason(err), Fix: "check the InternalHosts path", Err: err}
		}
		err = opendkimLines(data, f, func(n int, key, _ string) error {
			entries, lines = append(entries, key), append(lines, n)
			return nil
		})
		if err != nil {
			return nil, err
		}
	} else {
		list, err := ParseOpenDKIMDataset(spec)
		if err != nil {
			return nil, err
		}
		entries = list
		lines = make([]int, len(list))
	}
	out := make([]string, 0, len(entries))
	for i, e := range entries {
		v, err := opendkimHost(e)
		if err != nil {
			return nil, &OpenDKIMError{File: file, Line: lines[i], Problem: err.Error(), Fix: opendkimHostFix(e)}
		}
		out = append(out, v)
	}
	return out, nil
}

func opendkimHost(e string) (string, error) {
	if strings.HasPrefix(e, "!") {
		return "", fmt.Errorf("negated entry %q is not supported", e)
	}
	h := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
	if strings.Contains(h, "/") {
		p, err := netip.ParsePrefix(h)
		if err != nil {
			return "", fmt.Errorf("%q is not a valid CIDR range", e)
		}
		return p.Masked().String(), nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String(), nil
	}
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.HasPrefix(name, "*.") {
		name = name[1:]
	}
	if name != "" && opendkimLooksNumeric(name) {
		return "", fmt.Errorf("%q is neither an IP address nor a host name", e)
	}
	if mailsyntax.ValidDomain(name, peerHost|mailsyntax.LeadingDot) {
		return name, nil
	}
	return "", fmt.Errorf("%q is not an IP address, CIDR range or host name", e)
}

// opendkimLooksNumeric catches inet_addr short forms such as "10.1" that are
// syntactically host names but mean an address to OpenDKIM.
func opendkimLooksNumeric(s string) bool {
	for _, c := range s {
		if c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func opendkimHostFix(e string) string {
	if strings.HasPrefix(e, "!") {
		return "list the allowed addresses or ranges explicitly instead of excluding some"
	}
	return "write a full address or range such as 192.0.2.0/24, 127.0.0.1, ::1 or mail.example.com"
}
