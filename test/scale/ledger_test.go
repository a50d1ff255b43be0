package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestTally(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(by string, ms int, id string) arrival {
		return arrival{at: at(ms), by: by, clientIP: "127.0.0.1", queueID: id, signed: true, bodyOK: true}
	}
	k := &killEvent{instance: "inkan2", at: at(1000), restarted: at(3000)}
	l := newLedger("run", "127.0.0.1")
	l.submitted(1, outAcked, "dot", "", at(10))
	l.arrived(1, ok("inkan1", 20, "A"))
	l.submitted(2, outAcked, "dot", "", at(10)) // lost
	// 3: delivered by the killed instance before the kill, again after the
	// restart: the at-least-once window.
	l.arrived(3, ok("inkan2", 900, "C"))
	l.submitted(3, outAcked, "dot", "", at(905))
	l.arrived(3, ok("inkan2", 3050, "C"))
	// 4: a duplicate the kill does not explain (both copies before it).
	l.submitted(4, outAcked, "dot", "", at(100))
	l.arrived(4, ok("inkan1", 110, "D"))
	l.arrived(4, ok("inkan1", 120, "D"))
	// 5: unsure, arrived after the restart from the killed spool.
	l.submitted(5, outUnsure, "dot", "EOF", at(1001))
	l.arrived(5, ok("inkan2", 3040, "E"))
	// 6: refused but arrived; 7: cut, did not arrive.
	l.submitted(6, outRefused, "dot", "451 no", at(50))
	l.arrived(6, ok("inkan3", 60, "F"))
	l.submitted(7, outCut, "body", "reset", at(50))
	// 8: acked, but inkan recorded HAProxy's address and did not sign.
	l.submitted(8, outAcked, "dot", "", at(50))
	l.arrived(8, arrival{at: at(60), by: "inkan3", clientIP: "127.0.0.2", bodyOK: true})
	// 9: a copy of a message never submitted.
	l.arrived(9, ok("inkan1", 70, "G"))

	got := l.tally(k)
	if got.attempted != 8 || got.acked != 5 || got.unsure != 1 || got.refused != 1 || got.cut != 1 {
		t.Errorf("outcomes: %+v", got)
	}
	if len(got.lost) != 1 || got.lost[0] != 2 {
		t.Errorf("lost = %v, want [2]", got.lost)
	}
	if got.dupMsgs != 2 || got.dupCopies != 2 || got.dupAtKill != 1 || len(got.dupOther) != 1 || got.dupOther[0] != 4 {
		t.Errorf("duplicates: msgs %d copies %d at kill %d other %v", got.dupMsgs, got.dupCopies, got.dupAtKill, got.dupOther)
	}
	if got.unsureArrived != 1 || len(got.mustNotArrive) != 1 || !strings.HasPrefix(got.mustNotArrive[0], "seq 6 ") {
		t.Errorf("unsure arrived %d, must not arrive %v", got.unsureArrived, got.mustNotArrive)
	}
	if got.badIP != 1 || got.unsigned != 1 || got.corrupt != 0 || len(got.strays) != 1 {
		t.Errorf("badIP %d unsigned %d corrupt %d strays %v", got.badIP, got.unsigned, got.corrupt, got.strays)
	}
	if got.delivered != 6 || got.copies != 8 || got.byInstance["inkan2"] != 3 {
		t.Errorf("delivered %d copies %d by instance %v", got.delivered, got.copies, got.byInstance)
	}
	if f := got.failures(); len(f) != 6 {
		t.Errorf("failures = %d, want 6 (lost, dup, arrived, address, unsigned, stray):\n%s", len(f), strings.Join(f, "\n"))
	}

	// Without a kill, the same duplicate of seq 3 is not allowed.
	if got := l.tally(nil); got.dupAtKill != 0 || len(got.dupOther) != 2 {
		t.Errorf("no kill: at kill %d, other %v", got.dupAtKill, got.dupOther)
	}
	// A second copy from another instance is never the kill's.
	if explainedByKill([]arrival{ok("inkan2", 900, "C"), ok("inkan1", 3050, "C")}, k) {
		t.Error("a copy from another instance explained by the kill")
	}
	// Nor a second copy that came before the restart.
	if explainedByKill([]arrival{ok("inkan2", 900, "C"), ok("inkan2", 2000, "C")}, k) {
		t.Error("a copy before the restart explained by the kill")
	}

	f := l.spoolFate("inkan2", []string{"C", "E", "Z"}, k.restarted)
	if f.arrived != 2 || f.byOut[outAcked] != 1 || f.byOut[outUnsure] != 1 || f.before != 1 || len(f.missing) != 1 || f.missing[0] != "Z" {
		t.Errorf("spool fate: %+v", f)
	}
	if n := l.ackedMissing(); n != 1 {
		t.Errorf("ackedMissing = %d, want 1", n)
	}
}

func TestParseCopy(t *testing.T) {
	body := messageBody(42, 300)
	msg := "DKIM-Signature: a=rsa-sha256; bh=x;\r\n c=relaxed/relaxed; d=scale.test;\r\n s=s1; b=abc\r\n" +
		"Received: from [127.0.0.1] ([127.0.0.1])\r\n\tby inkan2.scale.test (inkan) with ESMTP id 06H4KH1DIELGDH6L\r\n\tfor <x@sink.test>; Sun, 06 Dec 2026 07:31:51 +0000\r\n" +
		"X-Scale-Run: kill3-abc\r\nX-Scale-Seq: 42\r\n\r\n" + string(body)
	p, err := parseCopy([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	want := parsedCopy{run: "kill3-abc", seq: 42, by: "inkan2.scale.test", clientIP: "127.0.0.1", queueID: "06H4KH1DIELGDH6L", signed: true}
	if p != want {
		t.Errorf("parseCopy = %+v, want %+v", p, want)
	}
	if !bytes.Equal(bodyOf([]byte(msg)), body) {
		t.Error("bodyOf")
	}
	if !bytes.HasPrefix(message("r", 42, 300), []byte("From: <"+sender+">")) || !bytes.HasSuffix(message("r", 42, 300), body) {
		t.Error("message")
	}
}

func TestParseShowStat(t *testing.T) {
	csv := "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown\n" +
		"smtp,FRONTEND,,,0,5,4096,300,1,2,0,0,0,,,,,OPEN,,,,,\n" +
		"inkan_relay,inkan1,0,0,0,3,,102,1,2,,0,,0,0,0,0,UP,1,1,0,0,0\n" +
		"inkan_relay,inkan2,0,0,0,3,,99,1,2,,0,,0,0,0,0,DOWN 1/2,1,1,0,2,1\n" +
		"inkan_relay,BACKEND,0,0,0,5,,201,1,2,0,0,,0,0,0,0,UP,2,2,0,,1\n"
	st, err := parseShowStat(bufio.NewScanner(strings.NewReader(csv)))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0] != (serverStat{"inkan1", "UP", 102, 0}) || st[1] != (serverStat{"inkan2", "DOWN", 99, 1}) {
		t.Errorf("parseShowStat = %+v", st)
	}
}

func TestParseQueueJSON(t *testing.T) {
	ids, err := parseQueueJSON(`{"queue_name":"active","queue_id":"06H4KH2PVAL5KMI6","arrival_time":1,"message_size":982,"forced_expire":false,"sender":"a@scale.test","recipients":[{"address":"x@sink.test"}]}
{"queue_name":"deferred","queue_id":"06H4KH2PVKJNIPUS","recipients":[]}
`)
	if err != nil || len(ids) != 2 || ids[1] != "06H4KH2PVKJNIPUS" {
		t.Errorf("parseQueueJSON = %v, %v", ids, err)
	}
	if ids, err := parseQueueJSON(""); err != nil || len(ids) != 0 {
		t.Errorf("empty queue: %v, %v", ids, err)
	}
	if _, err := parseQueueJSON("Mail queue is empty\n"); err == nil {
		t.Error("text output accepted as JSON")
	}
}
