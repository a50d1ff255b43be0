package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// dsnReport is what a delivery status notification (RFC 3464) says, read
// with go-message: which torture message it is about (from the returned
// header), and one entry per recipient.
type dsnReport struct {
	reportingMTA string
	run          string
	seq          int
	rcpts        []dsnRcpt
}

type dsnRcpt struct {
	addr      string // Final-Recipient without the "rfc822;" type
	action    string // failed, delayed...
	status    string // 5.1.1
	diag      string // Diagnostic-Code, with its type ("smtp; 550 ...")
	remoteMTA string
}

// parseDSN reads a multipart/report message.
func parseDSN(data []byte) (*dsnReport, error) {
	e, err := message.Read(bytes.NewReader(data))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, fmt.Errorf("read DSN: %w", err)
	}
	ct, params, err := e.Header.ContentType()
	if err != nil || ct != "multipart/report" {
		return nil, fmt.Errorf("DSN content type %q, want multipart/report", ct)
	}
	if rt := strings.ToLower(params["report-type"]); rt != "delivery-status" && rt != "global-delivery-status" {
		return nil, fmt.Errorf("DSN report-type %q", params["report-type"])
	}
	mr := e.MultipartReader()
	if mr == nil {
		return nil, errors.New("DSN is not multipart")
	}
	d := &dsnReport{}
	sawStatus := false
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return nil, fmt.Errorf("read DSN part: %w", err)
		}
		pt, _, _ := p.Header.ContentType()
		body, err := io.ReadAll(io.LimitReader(p.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read DSN part: %w", err)
		}
		switch pt {
		case "message/delivery-status", "message/global-delivery-status":
			if err := d.parseStatus(body); err != nil {
				return nil, err
			}
			sawStatus = true
		case "text/rfc822-headers", "message/global-headers", "message/rfc822":
			if run, seq, ok := parseTorture(body); ok {
				d.run, d.seq = run, seq
			}
		}
	}
	if !sawStatus {
		return nil, errors.New("DSN has no message/delivery-status part")
	}
	return d, nil
}

// parseStatus reads the per-message block, then one block per recipient.
func (d *dsnReport) parseStatus(body []byte) error {
	br := bufio.NewReader(bytes.NewReader(body))
	first := true
	for {
		// Skip blank lines between blocks.
		for {
			b, err := br.Peek(1)
			if err != nil {
				return d.checkStatus()
			}
			if b[0] != '\r' && b[0] != '\n' {
				break
			}
			br.ReadByte()
		}
		h, err := textproto.ReadHeader(br)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read delivery-status: %w", err)
		}
		if first {
			d.reportingMTA = strings.TrimSpace(h.Get("Reporting-MTA"))
			first = false
		} else if fr := h.Get("Final-Recipient"); fr != "" {
			_, addr, _ := strings.Cut(fr, ";")
			d.rcpts = append(d.rcpts, dsnRcpt{
				addr:      strings.Trim(strings.TrimSpace(addr), "<>"),
				action:    strings.ToLower(strings.TrimSpace(h.Get("Action"))),
				status:    strings.TrimSpace(h.Get("Status")),
				diag:      strings.TrimSpace(h.Get("Diagnostic-Code")),
				remoteMTA: strings.TrimSpace(h.Get("Remote-MTA")),
			})
		}
		if err != nil {
			return d.checkStatus()
		}
	}
}

func (d *dsnReport) checkStatus() error {
	if d.reportingMTA == "" {
		return errors.New("delivery-status without Reporting-MTA")
	}
	if len(d.rcpts) == 0 {
		return errors.New("delivery-status without a recipient block")
	}
	return nil
}
