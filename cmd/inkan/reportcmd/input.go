package reportcmd

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/emersion/go-message"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Limits on what one input may make the reader hold or produce. They bound
// memory and time on hostile input (zip and gzip bombs, endless mailboxes);
// real reports are far below them: the largest daily aggregate reports of
// the big receivers are a few MB of XML.
const (
	maxDocument   = 32 << 20  // one report, decompressed
	maxMessage    = 64 << 20  // one mail message, in a file, an mbox or a Maildir
	maxPlainFile  = 64 << 20  // a file that is not an mbox, read whole
	maxExpand     = 256 << 20 // all bytes decompression may produce for one input file or mbox message
	maxZipEntries = 1000
	maxDepth      = 5 // containers in containers: a zip in a message in an mbox
	maxFiles      = 100000
)

// kind is what a document holds.
type kind int

const (
	kindXML  kind = iota + 1 // a DMARC aggregate report
	kindJSON                 // a TLS-RPT report
)

func (k kind) String() string {
	if k == kindXML {
		return "DMARC aggregate report (XML)"
	}
	return "TLS-RPT report (JSON)"
}

// document is one report, decompressed, with the path that led to it.
type document struct {
	name string // "inbox.mbox message 12: report.zip: google.com!example.com!1!2.xml"
	data []byte
}

// problem is one input that could not be read, or was skipped.
type problem struct {
	Input string `json:"input"`
	Error string `json:"error"`
}

func (p problem) String() string {
	return mailsyntax.Printable(p.Input) + ": " + mailsyntax.Printable(p.Error)
}

// extractor turns files, folders, mailboxes and messages into documents of
// one kind. Every problem is recorded against the input it came from, and
// reading goes on with the next input.
type extractor struct {
	want    kind
	stdin   io.Reader
	docs    []document
	errors  []problem // inputs that could not be read
	skipped []problem // messages in a mailbox without a report: not errors
	budget  int64     // bytes decompression may still produce for the current input file
	inMbox  bool      // the current message came from a mailbox or Maildir
}

func newExtractor(want kind, stdin io.Reader) *extractor {
	return &extractor{want: want, stdin: stdin}
}

func (x *extractor) fail(name string, err error) {
	x.errors = append(x.errors, problem{Input: name, Error: err.Error()})
}

// add reads one command-line argument: "-" (standard input), a file, a
// Maildir or a folder of reports (read recursively).
func (x *extractor) add(arg string) {
	x.budget = maxExpand
	if arg == "-" {
		x.reader("standard input", x.stdin, true)
		return
	}
	st, err := os.Stat(arg)
	if err != nil {
		x.fail(arg, err)
		return
	}
	if st.IsDir() {
		x.dir(arg)
		return
	}
	x.file(arg, true)
}

func (x *extractor) file(name string, explicit bool) {
	f, err := os.Open(name)
	if err != nil {
		x.fail(name, err)
		return
	}
	defer f.Close()
	x.reader(name, f, explicit)
}

// dir reads every regular file under root. In a Maildir (cur, new and tmp
// folders) the messages in tmp are left alone: they are still being written.
func (x *extractor) dir(root string) {
	n := 0
	maildirs := map[string]bool{}
	maildir := func(d string) bool {
		v, ok := maildirs[d]
		if !ok {
			v = isMaildir(d)
			maildirs[d] = v
		}
		return v
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			x.fail(p, err)
			return nil
		}
		if d.IsDir() {
			if d.Name() == "tmp" && p != root && maildir(filepath.Dir(p)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil // symbolic links, sockets: not followed
		}
		if n++; n > maxFiles {
			return fmt.Errorf("more than %d files: name fewer at once", maxFiles)
		}
		inMaildir := maildir(filepath.Dir(filepath.Dir(p)))
		if inMaildir && strings.HasPrefix(d.Name(), ".") {
			return nil // not a message: Maildir names never start with "."
		}
		x.budget = maxExpand
		saved := x.inMbox
		x.inMbox = inMaildir
		x.file(p, false) // a file in a folder that holds no report is a note, not an error
		x.inMbox = saved
		return nil
	})
	if err != nil {
		x.fail(root, err)
	}
}

// isMaildir reports whether dir has the cur, new and tmp folders of a Maildir.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}

// reader reads one input: an mbox is read message by message, anything else
// whole (up to maxPlainFile) and then looked at.
func (x *extractor) reader(name string, r io.Reader, explicit bool) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(5)
	if string(head) == "From " {
		x.mbox(name, br)
		return
	}
	data, err := readLimited(br, maxPlainFile)
	if err != nil {
		x.fail(name, err)
		return
	}
	x.data(name, data, 0, explicit)
}

// errTooBig is returned by readLimited past its limit.
type errTooBig int64

func (e errTooBig) Error() string {
	return fmt.Sprintf("larger than %d MiB, refused (a report is far smaller: a compression bomb?)", int64(e)>>20)
}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errTooBig(limit)
	}
	return data, nil
}

// data looks at what b holds and unpacks it. explicit is true for inputs
// named on the command line (or inside them): they must hold a report.
func (x *extractor) data(name string, b []byte, depth int, explicit bool) {
	if depth > maxDepth {
		x.fail(name, fmt.Errorf("containers nested more than %d deep, refused", maxDepth))
		return
	}
	switch sniff(b) {
	case "gzip":
		x.gunzip(name, b, depth, explicit)
	case "zip":
		x.unzip(name, b, depth, explicit)
	case "mbox":
		x.mbox(name, bufio.NewReader(bytes.NewReader(b)))
	case "xml":
		x.document(name, b, kindXML, explicit)
	case "json":
		x.document(name, b, kindJSON, explicit)
	case "message":
		x.message(name, b, depth, explicit)
	default:
		x.notReport(name, explicit, "not a report: neither XML, JSON, gzip, zip, a mail message nor an mbox")
	}
}

func (x *extractor) document(name string, b []byte, k kind, explicit bool) {
	if k == x.want {
		x.docs = append(x.docs, document{name: name, data: b})
		return
	}
	cmd := "dmarc"
	if k == kindJSON {
		cmd = "tlsrpt"
	}
	x.notReport(name, explicit, fmt.Sprintf("a %s, not a %s: read it with inkan report %s", k, x.want, cmd))
}

// notReport records an input that holds no report of the wanted kind: an
// error when it was named on the command line, else (a file in a folder, a
// message in a mailbox) a note.
func (x *extractor) notReport(name string, explicit bool, why string) {
	p := problem{Input: name, Error: why}
	if explicit {
		x.errors = append(x.errors, p)
	} else {
		x.skipped = append(x.skipped, p)
	}
}

// sniff names the format of b from its first bytes.
func sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(b, []byte("PK\x03\x04")), bytes.HasPrefix(b, []byte("PK\x05\x06")):
		return "zip"
	case bytes.HasPrefix(b, []byte("From ")):
		return "mbox"
	}
	t := bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), " \t\r\n")
	switch {
	case bytes.HasPrefix(t, []byte("<")):
		return "xml"
	case bytes.HasPrefix(t, []byte("{")), bytes.HasPrefix(t, []byte("[")):
		return "json"
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if h := mailsyntax.ParseHeader(line); len(h) == 1 && len(line) < 1000 {
		return "message"
	}
	return ""
}

func (x *extractor) take(n int64) error {
	if x.budget -= n; x.budget < 0 {
		return fmt.Errorf("decompresses to more than %d MiB in all, refused (a compression bomb?)", maxExpand>>20)
	}
	return nil
}

func (x *extractor) gunzip(name string, b []byte, depth int, explicit bool) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		x.fail(name, fmt.Errorf("gzip: %w", err))
		return
	}
	zr.Multistream(false)
	out, err := readLimited(zr, maxDocument)
	if err == nil {
		err = x.take(int64(len(out)))
	}
	if err != nil {
		x.fail(name, fmt.Errorf("gzip: %w", err))
		return
	}
	inner := strings.TrimSuffix(path.Base(filepath.ToSlash(name)), ".gz")
	if zr.Name != "" {
		inner = zr.Name
	}
	x.data(name+": "+inner, out, depth+1, explicit)
}

// unzip reads each entry of a zip archive. Nothing is ever written to disk,
// but an entry whose name would escape a folder (absolute, "..", a drive
// letter or backslashes) is refused all the same: no real report is named so.
func (x *extractor) unzip(name string, b []byte, depth int, explicit bool) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		x.fail(name, fmt.Errorf("zip: %w", err))
		return
	}
	if len(zr.File) > maxZipEntries {
		x.fail(name, fmt.Errorf("zip: %d entries, more than %d: refused", len(zr.File), maxZipEntries))
		return
	}
	found := false
	for _, f := range zr.File {
		entry := name + ": " + f.Name
		if f.FileInfo().IsDir() {
			continue
		}
		found = true
		if err := unsafeZipName(f.Name); err != nil {
			x.fail(entry, fmt.Errorf("zip entry refused: %w", err))
			continue
		}
		if f.UncompressedSize64 > maxDocument {
			x.fail(entry, fmt.Errorf("zip entry: %w", errTooBig(maxDocument)))
			continue
		}
		out, err := readZipEntry(f)
		if err == nil {
			err = x.take(int64(len(out)))
		}
		if err != nil {
			x.fail(entry, fmt.Errorf("zip entry: %w", err))
			if x.budget < 0 {
				return
			}
			continue
		}
		x.data(entry, out, depth+1, explicit)
	}
	if !found && explicit {
		x.fail(name, errors.New("zip: no files in the archive"))
	}
}

func readZipEntry(f *zip.File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readLimited(rc, maxDocument) // the declared size may lie: the limit is on what comes out
}

func unsafeZipName(n string) error {
	switch {
	case n == "":
		return errors.New("empty name")
	case strings.ContainsAny(n, "\\\x00"):
		return fmt.Errorf("name %q has a backslash or NUL", n)
	case strings.HasPrefix(n, "/") || (len(n) > 1 && n[1] == ':'):
		return fmt.Errorf("absolute name %q", n)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return fmt.Errorf("name %q climbs out of the archive (path traversal)", n)
		}
	}
	return nil
}

// mbox reads an mbox (mboxo or mboxrd) message by message: a message starts
// at a "From " line at the start of the file or after a blank line, and
// ">From " lines are unquoted one level.
func (x *extractor) mbox(name string, br *bufio.Reader) {
	var msg bytes.Buffer
	n := 0
	tooBig := false
	prevBlank := true
	flush := func() {
		if n == 0 {
			return
		}
		mname := fmt.Sprintf("%s message %d", name, n)
		if tooBig {
			x.fail(mname, fmt.Errorf("message %w", errTooBig(maxMessage)))
		} else {
			saved := x.inMbox
			x.inMbox = true
			x.budget = maxExpand // per message: a year of reports in one mailbox is fine
			x.message(mname, bytes.Clone(msg.Bytes()), 1, false)
			x.inMbox = saved
		}
		msg.Reset()
		tooBig = false
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A very long line: keep it whole, within the message limit.
			rest, err2 := br.ReadBytes('\n')
			line = append(bytes.Clone(line), rest...)
			err = err2
		}
		if len(line) > 0 {
			switch {
			case prevBlank && bytes.HasPrefix(line, []byte("From ")):
				flush()
				n++
			case n == 0:
				x.fail(name, errors.New("mbox: does not start with a \"From \" line"))
				return
			case tooBig:
			default:
				if q := bytes.TrimLeft(line, ">"); len(q) < len(line) && bytes.HasPrefix(q, []byte("From ")) {
					line = line[1:]
				}
				if msg.Len()+len(line) > maxMessage {
					tooBig = true
				} else {
					msg.Write(line)
				}
			}
			prevBlank = len(bytes.TrimRight(line, "\r\n")) == 0
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				x.fail(name, fmt.Errorf("mbox: %w", err))
			}
			break
		}
	}
	flush()
}

// reportTypes are the media types reports are sent as (RFC 7489 §7.2.1.1,
// RFC 8460 §5.3) and the ones receivers use in practice.
var reportTypes = map[string]bool{
	"application/gzip": true, "application/x-gzip": true, "application/zip": true,
	"application/x-zip-compressed": true, "application/x-zip": true,
	"application/xml": true, "text/xml": true,
	"application/tlsrpt+gzip": true, "application/tlsrpt+json": true, "application/json": true,
}

// message reads a mail message (go-message) and every part that can hold a
// report: a report media type, or a file name ending in .xml, .gz, .zip or
// .json (for application/octet-stream).
func (x *extractor) message(name string, b []byte, depth int, explicit bool) {
	e, err := message.Read(bytes.NewReader(b))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		x.fail(name, fmt.Errorf("mail message: %w", err))
		return
	}
	if subj, _ := e.Header.Text("Subject"); subj != "" {
		name += " (" + truncate(subj, 60) + ")"
	}
	before := len(x.docs)
	beforeErr := len(x.errors)
	parts := 0
	err = e.Walk(func(_ []int, p *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		if parts++; parts > 1000 {
			return errors.New("more than 1000 parts")
		}
		mt, params, _ := p.Header.ContentType()
		if strings.HasPrefix(mt, "multipart/") {
			return nil
		}
		file := partFileName(p, params)
		if !reportTypes[mt] && mt != "message/rfc822" && !hasReportExt(file) {
			return nil
		}
		body, err := readLimited(p.Body, maxMessage)
		if err != nil {
			x.fail(name+": "+file, err)
			return nil
		}
		pname := name + ": " + file
		if file == "" {
			pname = name + ": " + mt + " part"
		}
		if mt == "message/rfc822" {
			x.message(pname, body, depth+1, false)
			return nil
		}
		x.data(pname, body, depth+1, true)
		return nil
	})
	if err != nil {
		x.fail(name, fmt.Errorf("mail message: %w", err))
		return
	}
	if len(x.docs) == before && len(x.errors) == beforeErr {
		x.notReport(name, explicit && !x.inMbox, "no "+x.want.String()+" in this message")
	}
}

func partFileName(p *message.Entity, ctParams map[string]string) string {
	if _, dp, err := p.Header.ContentDisposition(); err == nil && dp["filename"] != "" {
		return dp["filename"]
	}
	if ctParams["name"] != "" {
		return ctParams["name"]
	}
	return ""
}

func hasReportExt(file string) bool {
	f := strings.ToLower(file)
	for _, ext := range []string{".xml", ".gz", ".zip", ".json", ".gzip"} {
		if strings.HasSuffix(f, ext) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
}
