package main

import (
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// dnsServer is an authoritative-looking miekg/dns server on 127.0.0.1 that
// every inkan under test uses as delivery.resolver. Names it does not know
// are NXDOMAIN, so nothing is ever looked up outside the harness.
type dnsServer struct {
	addr string
	srv  *dns.Server

	mu    sync.Mutex
	mx    map[string][]*dns.MX // owner -> records (Mx "." is a null MX)
	a     map[string]net.IP
	rcode map[string]int // forced answer code, e.g. dns.RcodeServerFailure
}

func startDNS() (*dnsServer, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &dnsServer{addr: pc.LocalAddr().String(), mx: map[string][]*dns.MX{}, a: map[string]net.IP{}, rcode: map[string]int{}}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, Handler: d, NotifyStartedFunc: func() { close(started) }}
	go d.srv.ActivateAndServe() // ends with close()
	<-started
	return d, nil
}

func (d *dnsServer) close() { d.srv.Shutdown() }

// setMX publishes "domain MX pref host" records and host's A record
// (127.0.0.1). host "." makes a null MX (RFC 7505).
func (d *dnsServer) setMX(domain string, hosts ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	owner := dns.Fqdn(strings.ToLower(domain))
	d.mx[owner] = nil
	for i, host := range hosts {
		target := dns.Fqdn(strings.ToLower(host))
		d.mx[owner] = append(d.mx[owner], &dns.MX{
			Hdr:        dns.RR_Header{Name: owner, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 1},
			Preference: uint16(10 * i),
			Mx:         target,
		})
		if host != "." {
			d.a[target] = net.IPv4(127, 0, 0, 1)
		}
	}
	if len(hosts) == 1 && hosts[0] == "." {
		d.mx[owner][0].Preference = 0
	}
}

// setRcode forces an answer code for every question about name; 0 removes it.
func (d *dnsServer) setRcode(name string, rcode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	owner := dns.Fqdn(strings.ToLower(name))
	if rcode == 0 {
		delete(d.rcode, owner)
		return
	}
	d.rcode[owner] = rcode
}

func (d *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	d.mu.Lock()
	rcode, forced := d.rcode[name]
	mxs, hasMX := d.mx[name]
	ip, hasA := d.a[name]
	d.mu.Unlock()
	switch {
	case forced:
		m.Rcode = rcode
	case !hasMX && !hasA:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, soa())
	case q.Qtype == dns.TypeMX && hasMX:
		for _, mx := range mxs {
			m.Answer = append(m.Answer, dns.Copy(mx))
		}
	case q.Qtype == dns.TypeA && hasA:
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: ip})
	default:
		m.Ns = append(m.Ns, soa()) // NODATA, cached for one second
	}
	w.WriteMsg(m)
}

func soa() dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 1},
		Ns: "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 1}
}
