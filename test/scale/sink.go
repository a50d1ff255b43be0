package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"
)

// sink is the one next hop every inkan delivers to: an in-process SMTP
// server (go-smtp) that books each copy it accepts in the ledger of its
// phase (X-Scale-Run), under its X-Scale-Seq.
type sink struct {
	addr string
	srv  *smtp.Server
	ln   net.Listener
	size int // body size of the load's messages, to check bodies

	mu      sync.Mutex
	ledgers map[string]*ledger
	other   int // copies of no known run
	done    chan struct{}
}

func startSink(size int) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: listen: %w", err)
	}
	s := &sink{addr: ln.Addr().String(), ln: ln, size: size, ledgers: map[string]*ledger{}, done: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s}, nil
	}))
	srv.Domain = "sink.scale.test"
	srv.MaxMessageBytes = 64 << 20
	srv.MaxRecipients = 1000
	srv.ReadTimeout = 60 * time.Second
	srv.WriteTimeout = 60 * time.Second
	srv.ErrorLog = nopLogger{}
	s.srv = srv
	go func() {
		defer close(s.done)
		srv.Serve(ln)
	}()
	return s, nil
}

func (s *sink) close() {
	s.srv.Close()
	<-s.done
}

// attach routes the copies of l.run to l from now on.
func (s *sink) attach(l *ledger) {
	s.mu.Lock()
	s.ledgers[l.run] = l
	s.mu.Unlock()
}

func (s *sink) strays() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.other
}

type sinkSession struct {
	s  *sink
	to int
}

func (ss *sinkSession) Reset()        { ss.to = 0 }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }

func (ss *sinkSession) Rcpt(string, *smtp.RcptOptions) error {
	ss.to++
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	at := time.Now()
	p, err := parseCopy(data)
	s := ss.s
	s.mu.Lock()
	l := s.ledgers[p.run]
	if l == nil {
		s.other++
	}
	s.mu.Unlock()
	if l == nil {
		return nil
	}
	a := arrival{at: at, by: p.by, clientIP: p.clientIP, queueID: p.queueID, signed: p.signed,
		bodyOK: err == nil && bytes.Equal(bodyOf(data), messageBody(p.seq, s.size))}
	for range max(ss.to, 1) {
		l.arrived(p.seq, a)
	}
	return nil
}

// parsedCopy is what the sink reads from a copy's header.
type parsedCopy struct {
	run      string
	seq      int
	by       string
	clientIP string
	queueID  string
	signed   bool
}

// receivedRE reads inkan's own Received field: "from HELO ([IP]) by HOST
// (inkan) ...".
var receivedRE = regexp.MustCompile(`\(\[([0-9a-fA-F.:]+)\]\)\s+by\s+(\S+)\s+\(inkan\)(?:\s+with\s+\S+\s+id\s+([0-9A-Za-z]+))?`)

// parseCopy reads X-Scale-Run, X-Scale-Seq, the topmost Received field
// (inkan's: the sink adds none) and whether a DKIM-Signature with
// d=scale.test is there.
func parseCopy(data []byte) (parsedCopy, error) {
	var p parsedCopy
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(headerOf(data))))
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return p, fmt.Errorf("header: %w", err)
	}
	p.run = strings.TrimSpace(h.Get("X-Scale-Run"))
	p.seq, _ = strconv.Atoi(strings.TrimSpace(h.Get("X-Scale-Seq")))
	if m := receivedRE.FindStringSubmatch(h.Get("Received")); m != nil {
		p.clientIP, p.by, p.queueID = m[1], strings.TrimSuffix(m[2], ";"), m[3]
	}
	for _, sig := range h.Values("DKIM-Signature") {
		if strings.Contains(strings.Join(strings.Fields(sig), ""), "d="+signDomain+";") {
			p.signed = true
		}
	}
	if p.run == "" || p.seq <= 0 {
		return p, errors.New("no X-Scale-Run or X-Scale-Seq")
	}
	return p, nil
}

// headerOf is the header section including the blank line.
func headerOf(data []byte) []byte {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return data[:i+4]
	}
	return data
}

// bodyOf is what follows the first blank line.
func bodyOf(data []byte) []byte {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return data[i+4:]
	}
	return nil
}

// nopLogger swallows go-smtp's log lines.
type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}
