"""
The IMAP door through a StringTransport on the memory store: framing and
literals, states, FETCH, STORE, SEARCH, COPY/MOVE, EXPUNGE rules, IDLE,
login rules and hostile input.
"""

import base64

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.doors.imap import parser
from twisted_mail.mail.model import MailEvent

from .imaphelp import IMAPSession, message, recordBatchedReads

NESTED = (
    b"From: a@x\nSubject: nested\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=outer\n\n"
    b"--outer\nContent-Type: text/plain\n\nhello\n"
    b"--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
    b"--inner\nContent-Type: text/plain\n\nplain\n"
    b"--inner\nContent-Type: text/html\n\n<p>html</p>\n--inner--\n"
    b"--outer\nContent-Type: message/rfc822\n\nFrom: b@y\nSubject: inside\n\ninner\n"
    b"--outer--\n"
)


class LiteralTests(SynchronousTestCase):
    def test_synchronisingLiteral(self):
        """
        A synchronising literal gets a continuation request, and its octets
        are the argument.
        """
        s = IMAPSession()
        self.assertEqual(s.command(b"a LOGIN bob {6}"), b"+ ready for literal data\r\n")
        self.assertIn(b"a OK", s.command(b"secret"))

    def test_literalPlus(self):
        """
        A LITERAL+ literal comes without a continuation request.
        """
        s = IMAPSession()
        out = s.send(b"a LOGIN {3+}\r\nbob {6+}\r\nsecret\r\n")
        self.assertNotIn(b"+ ready", out)
        self.assertIn(b"a OK", out)

    def test_passwordLiteralWithSpecials(self):
        """
        A literal password may hold spaces, quotes and parentheses.
        """
        s = IMAPSession()
        self.assertIn(b"a OK", s.send(b'a LOGIN bob {8+}\r\n( "x" )\r\n'))

    def test_appendTooBigBeforeLiteral(self):
        """
        APPEND of a synchronising literal over the size limit is answered NO
        [TOOBIG] at once; nothing is stored and the session goes on.
        """
        s = IMAPSession(maxMessageSize=1000)
        s.login()
        out = s.command(b"a APPEND INBOX {5000}")
        self.assertEqual(out, b"a NO [TOOBIG] the message is larger than 1000 octets\r\n")
        self.assertIn(b"b OK", s.command(b"b NOOP"))
        self.assertEqual(s.store.messages("bob"), [])

    def test_appendTooBigLiteralPlus(self):
        """
        A LITERAL+ APPEND over the limit is read, dropped and answered NO
        [TOOBIG].
        """
        s = IMAPSession(maxMessageSize=1000)
        s.login()
        out = s.send(b"a APPEND INBOX {5000+}\r\n" + b"x" * 5000 + b"\r\nb NOOP\r\n")
        self.assertIn(b"a NO [TOOBIG]", out)
        self.assertIn(b"b OK", out)
        self.assertEqual(s.store.messages("bob"), [])

    def test_hugeLiteralElsewhere(self):
        """
        A 10 MB literal outside APPEND is refused with BAD before it is read.
        """
        s = IMAPSession()
        out = s.command(b"a LOGIN bob {10485760}")
        self.assertEqual(out, b"a BAD literal too long\r\n")
        self.assertIn(b"b OK", s.command(b"b NOOP"))

    def test_literalLongerThanAnnounced(self):
        """
        Octets beyond an announced literal are read as the rest of the
        command: a BAD, and the session goes on.
        """
        s = IMAPSession()
        out = s.send(b"a LOGIN bob {3+}\r\nsecret\r\nb NOOP\r\n")
        self.assertIn(b"a BAD", out)
        self.assertIn(b"b OK", out)

    def test_appendWithFlagsAndDate(self):
        """
        APPEND stores the message with its flags and date and answers
        APPENDUID.
        """
        s = IMAPSession()
        s.login()
        text = b"Subject: hi\r\n\r\nbody\r\n"
        out = s.send(b'a APPEND INBOX (\\Seen $Work) "17-Jul-1996 02:44:25 -0700" {%d+}\r\n'
                     % len(text) + text + b"\r\n")
        self.assertRegex(out, rb"a OK \[APPENDUID \d+ 1\]")
        s.command(b"s SELECT INBOX")
        out = s.command(b"f FETCH 1 (FLAGS INTERNALDATE BODY.PEEK[])")
        self.assertIn(b"$Work", out)
        self.assertIn(b"\\Seen", out)
        self.assertIn(b'INTERNALDATE "17-Jul-1996 09:44:25 +0000"', out)
        self.assertIn(b"BODY[] {%d}\r\n" % len(text) + text, out)

    def test_appendNoFolder(self):
        """
        APPEND to a folder that does not exist is NO [TRYCREATE].
        """
        s = IMAPSession()
        s.login()
        self.assertIn(b"a NO [TRYCREATE]", s.send(b"a APPEND Nope {3+}\r\nx\r\n\r\n"))


class StateTests(SynchronousTestCase):
    def test_wrongState(self):
        """
        Commands of a later state are refused with BAD, and the session goes
        on.
        """
        s = IMAPSession()
        self.assertIn(b"a BAD log in first", s.command(b"a SELECT INBOX"))
        self.assertIn(b"b BAD log in first", s.command(b"b FETCH 1 FLAGS"))
        s.login()
        self.assertIn(b"c BAD select a folder first", s.command(b"c FETCH 1 FLAGS"))
        self.assertIn(b"d BAD already logged in", s.command(b"d LOGIN bob x"))

    def test_unknownCommand(self):
        """
        An unknown command is a tagged BAD.
        """
        s = IMAPSession()
        self.assertEqual(s.command(b"a FROBNICATE"), b"a BAD unknown command\r\n")

    def test_noTag(self):
        """
        A line without a tag is an untagged BAD.
        """
        s = IMAPSession()
        self.assertTrue(s.command(b"(((").startswith(b"* BAD"))

    def test_unselectKeepsDeleted(self):
        """
        UNSELECT leaves messages marked \\Deleted; CLOSE expunges them
        without EXPUNGE responses.
        """
        s = IMAPSession(messages=[message(b"one"), message(b"two")])
        s.select()
        s.command(b"a STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(s.command(b"b UNSELECT"), b"b OK UNSELECT completed\r\n")
        s.command(b"c SELECT INBOX")
        self.assertEqual(s.command(b"d CLOSE"), b"d OK CLOSE completed\r\n")
        self.assertEqual(len(s.store.messages("bob")), 1)

    def test_examineIsReadOnly(self):
        """
        A folder selected by EXAMINE can't be changed, and FETCH BODY[] does
        not set \\Seen there.
        """
        s = IMAPSession(messages=[message(b"one")])
        s.login()
        self.assertIn(b"[READ-ONLY]", s.command(b"a EXAMINE INBOX"))
        self.assertIn(b"b NO [READ-ONLY]", s.command(b"b STORE 1 +FLAGS (\\Seen)"))
        self.assertNotIn(b"\\Seen", s.command(b"c FETCH 1 BODY[]"))

    def test_closedWhenSelectingAgain(self):
        """
        SELECT or EXAMINE while a folder is selected first says C{* OK
        [CLOSED]} (RFC 7162, as Dovecot does), even when the new folder
        does not open; the first SELECT does not.
        """
        s = IMAPSession(messages=[message(b"one")])
        self.assertNotIn(b"CLOSED", s.select())
        self.assertTrue(s.command(b"a EXAMINE INBOX").startswith(b"* OK [CLOSED] "))
        out = s.command(b"b SELECT Nowhere")
        self.assertTrue(out.startswith(b"* OK [CLOSED] "), out)
        self.assertIn(b"b NO [NONEXISTENT]", out)
        self.assertNotIn(b"CLOSED", s.command(b"c SELECT INBOX"))

    def test_logout(self):
        """
        LOGOUT says BYE, answers OK and closes.
        """
        s = IMAPSession()
        self.assertEqual(s.command(b"a LOGOUT"),
                         b"* BYE simplemail logging out\r\na OK LOGOUT completed\r\n")
        self.assertTrue(s.transport.disconnecting)


class LoginTests(SynchronousTestCase):
    def test_authenticatePlain(self):
        """
        AUTHENTICATE PLAIN works with a continuation and with an initial
        response.
        """
        token = base64.b64encode(b"\0bob\0pw")
        s = IMAPSession()
        self.assertEqual(s.command(b"a AUTHENTICATE PLAIN"), b"+ \r\n")
        self.assertIn(b"a OK", s.command(token))
        s = IMAPSession()
        self.assertIn(b"a OK", s.command(b"a AUTHENTICATE PLAIN " + token))

    def test_authenticateCancelled(self):
        """
        A client cancels AUTHENTICATE with *.
        """
        s = IMAPSession()
        s.command(b"a AUTHENTICATE PLAIN")
        self.assertEqual(s.command(b"*"), b"a BAD authentication cancelled\r\n")

    def test_unknownUser(self):
        """
        Logging in as a user who does not exist is NO [AUTHENTICATIONFAILED];
        the third failure closes the connection.
        """
        s = IMAPSession()
        self.assertIn(b"a NO [AUTHENTICATIONFAILED]", s.command(b"a LOGIN carol x"))
        s.command(b"b LOGIN carol x")
        out = s.command(b"c LOGIN ../etc x")
        self.assertIn(b"* BYE", out)
        self.assertTrue(s.transport.disconnecting)

    def test_loginDisabledWithoutTLS(self):
        """
        With passwords, a client off loopback without TLS sees LOGINDISABLED
        and its LOGIN is refused; on loopback it may log in.
        """
        s = IMAPSession(portal=object(), peer=IPv4Address("TCP", "192.0.2.1", 5000))
        self.assertIn(b"LOGINDISABLED", s.greeting)
        self.assertNotIn(b"AUTH=PLAIN", s.greeting)
        self.assertIn(b"a NO [PRIVACYREQUIRED]", s.command(b"a LOGIN bob pw"))
        s = IMAPSession(portal=object(), peer=IPv4Address("TCP", "127.0.0.1", 5000))
        self.assertNotIn(b"LOGINDISABLED", s.greeting)

    def test_capabilities(self):
        """
        CAPABILITY lists the extensions served.
        """
        s = IMAPSession()
        out = s.command(b"a CAPABILITY")
        for cap in (b"IMAP4rev1", b"IDLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE",
                    b"NAMESPACE", b"ID", b"ENABLE", b"UNSELECT", b"LITERAL+",
                    b"CHILDREN", b"AUTH=PLAIN"):
            self.assertIn(b" " + cap, out)


class FetchTests(SynchronousTestCase):
    def test_bodystructureNested(self):
        """
        BODYSTRUCTURE of nested multiparts and a message/rfc822 part nests
        as RFC 3501 says, with Dovecot 2.3's values (checked against it):
        text parts without a charset are US-ASCII, and a part's last line,
        whose line end belongs to the boundary, is not counted.
        """
        s = IMAPSession(messages=[NESTED])
        s.select()
        out = s.command(b"a FETCH 1 BODYSTRUCTURE")
        self.assertIn(
            b'BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 0 '
            b'NIL NIL NIL NIL)(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 0 '
            b'NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 11 0 '
            b'NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)'
            b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 35 (NIL "inside" ((NIL NIL "b" "y")) '
            b'((NIL NIL "b" "y")) ((NIL NIL "b" "y")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" '
            b'("CHARSET" "us-ascii") NIL NIL "7BIT" 5 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL) '
            b'"MIXED" ("BOUNDARY" "outer") NIL NIL NIL)',
            out)

    def test_sections(self):
        """
        BODY[n.m], BODY[n.MIME], BODY[n.HEADER] and BODY[n.TEXT] name the
        parts by number.
        """
        s = IMAPSession(messages=[NESTED])
        s.select()
        out = s.command(b"a FETCH 1 (BODY.PEEK[2.2] BODY.PEEK[2.1.MIME] "
                        b"BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.1])")
        self.assertIn(b"BODY[2.2] {11}\r\n<p>html</p>", out)
        self.assertIn(b"BODY[2.1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n", out)
        self.assertIn(b"BODY[3.HEADER] {30}\r\nFrom: b@y\r\nSubject: inside\r\n\r\n", out)
        self.assertIn(b"BODY[3.TEXT] {5}\r\ninner", out)
        self.assertIn(b"BODY[3.1] {5}\r\ninner", out)

    def test_partial(self):
        """
        BODY[]<n.m> answers m octets from n, labelled <n>; past the end, an
        empty string.
        """
        s = IMAPSession(messages=[b"Subject: abc\n\n0123456789\n"])
        s.select()
        out = s.command(b"a FETCH 1 (BODY.PEEK[TEXT]<2.3> BODY.PEEK[]<1000.10>)")
        self.assertIn(b"BODY[TEXT]<2> {3}\r\n234", out)
        self.assertIn(b"BODY[]<1000> {0}\r\n", out)

    def test_headerFields(self):
        """
        BODY[HEADER.FIELDS (..)] and .NOT pick header lines, folding kept.
        """
        s = IMAPSession(messages=[b"Subject: a\n b\nTo: x\nX-A: 1\n\nbody\n"])
        s.select()
        out = s.command(b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (subject x-a)] "
                        b"BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)])")
        self.assertIn(b"BODY[HEADER.FIELDS (SUBJECT X-A)] {26}\r\nSubject: a\r\n b\r\nX-A: 1\r\n\r\n", out)
        self.assertIn(b"BODY[HEADER.FIELDS.NOT (SUBJECT)] {17}\r\nTo: x\r\nX-A: 1\r\n\r\n", out)

    def test_bodySetsSeen(self):
        """
        FETCH BODY[] sets \\Seen and says so; BODY.PEEK[] does not.
        """
        s = IMAPSession(messages=[message(b"one"), message(b"two")])
        s.select()
        self.assertNotIn(b"\\Seen", s.command(b"a FETCH 1 BODY.PEEK[]"))
        out = s.command(b"b FETCH 2 BODY[]")
        self.assertIn(b"FLAGS (\\Seen)", out)
        out = s.command(b"c FETCH 1:* FLAGS")
        self.assertIn(b"* 1 FETCH (FLAGS ())", out)
        self.assertIn(b"* 2 FETCH (FLAGS (\\Seen))", out)

    def test_sizeMatchesBody(self):
        """
        RFC822.SIZE is the length of BODY[] (CRLF line ends), even for a
        message without a final line end.
        """
        s = IMAPSession(messages=[b"Subject: x\n\nno final newline"])
        s.select()
        out = s.command(b"a FETCH 1 (RFC822.SIZE BODY.PEEK[])")
        size = int(out.split(b"RFC822.SIZE ")[1].split(b" ")[0])
        self.assertIn(b"BODY[] {%d}\r\n" % size, out)

    def test_sequenceSetStar(self):
        """
        * is the last message; n:* and *:n are the same range; UID n:* with
        n past the last UID still names the last message.
        """
        s = IMAPSession(messages=[message(b"%d" % i) for i in range(5)])
        s.select()
        out = s.command(b"a FETCH *:4 UID")
        self.assertEqual(out.count(b"FETCH (UID"), 2)
        out = s.command(b"b UID FETCH 100:* UID")
        self.assertEqual(out, b"* 5 FETCH (UID 5)\r\nb OK FETCH completed\r\n")
        out = s.command(b"c FETCH 1,3,* UID")
        self.assertEqual(out.count(b"FETCH (UID"), 3)
        self.assertIn(b"d BAD", s.command(b"d FETCH 9 UID"))
        self.assertIn(b"e BAD", s.command(b"e FETCH 0 UID"))

    def test_stoppedReader(self):
        """
        A client that stops reading stops the FETCH: the server writes no
        more than a batch ahead, and goes on when the client reads.
        """
        big = message(b"big", b"x" * 70000 + b"\n")
        s = IMAPSession(messages=[big] * 50)
        s.select()
        s.protocol.dataReceived(b"a FETCH 1:* BODY.PEEK[]\r\nb NOOP\r\n")
        producer = s.transport.producer
        self.assertIsNotNone(producer)
        written = len(s.transport.value())
        self.assertLess(written, 3 * 75000)
        producer.resumeProducing()
        self.assertLess(len(s.transport.value()), written + 3 * 75000)
        out = s.read()
        self.assertEqual(out.count(b"BODY[] {"), 50 - out[:0].count(b"x"))
        self.assertIn(b"b OK", out)

    def test_bodiesInBatches(self):
        """
        FETCH of many bodies asks the store for them a batch at a time, and
        answers every message in sequence order with its own text, cached
        ENVELOPEs and fresh ones mixed.
        """
        from twisted_mail.doors.imap.selected import PREFETCH_COUNT
        from twisted_mail.stores.memory import _MemoryFolder

        calls = recordBatchedReads(self)
        self.patch(_MemoryFolder, "fetchMessage", lambda folder, msgid: self.fail(msgid))
        count = 3 * PREFETCH_COUNT + 5
        s = IMAPSession(messages=[message(b"number %d" % i) for i in range(count)])
        s.select()
        out = s.command(b"a FETCH 1:* BODY.PEEK[]")
        self.assertEqual(len(calls), 4)
        self.assertEqual(sum(calls), count)
        bodies = out.split(b"* ")[1:]
        self.assertEqual(len(bodies), count)
        for i, body in enumerate(bodies):
            self.assertTrue(body.startswith(b"%d FETCH (BODY[] {" % (i + 1)), body[:40])
            self.assertIn(b"Subject: number %d\r\n" % i, body)
        s.command(b"b FETCH 2,5 ENVELOPE")
        out = s.command(b"c FETCH 1:6 ENVELOPE")
        self.assertEqual([line.split(b" ")[1] for line in out.split(b"\r\n")[:6]],
                         [b"%d" % n for n in range(1, 7)])
        self.assertIn(b"c OK", out)

    def test_bodyExpungedElsewhere(self):
        """
        A body expunged by another session is left out of FETCH (the others
        are sent) and the answer says so.
        """
        store_ = IMAPSession(messages=[message(b"%d" % i) for i in range(3)]).store
        a = IMAPSession(store=store_)
        b = IMAPSession(store=store_)
        a.select()
        b.select()
        a.command(b"x STORE 2 +FLAGS.SILENT (\\Deleted)")
        a.command(b"y EXPUNGE")
        out = b.command(b"f FETCH 1:* BODY.PEEK[]")
        self.assertEqual(out.count(b"BODY[] {"), 2)
        self.assertIn(b"* 1 FETCH", out)
        self.assertIn(b"* 3 FETCH", out)
        self.assertIn(b"f NO [EXPUNGEISSUED]", out)

    def test_envelopeQuoting(self):
        """
        ENVELOPE strings with quotes are escaped, and 8-bit ones sent as
        literals.
        """
        s = IMAPSession(messages=[b'Subject: say "hi"\nFrom: J\xc3\xb6rg <j@x>\n\nb\n'])
        s.select()
        out = s.command(b"a FETCH 1 ENVELOPE")
        self.assertIn(b'"say \\"hi\\""', out)
        self.assertIn(b"{5}\r\nJ\xc3\xb6rg", out)


class ChangeTests(SynchronousTestCase):
    def test_storeAndFlagsOfOthers(self):
        """
        STORE answers with the new flags; a change made by another session is
        shown at the next command.
        """
        store_ = IMAPSession(messages=[message(b"one")]).store
        a = IMAPSession(store=store_)
        b = IMAPSession(store=store_)
        a.select()
        b.select()
        self.assertIn(b"* 1 FETCH (FLAGS (\\Flagged))", a.command(b"x STORE 1 +FLAGS (\\Flagged)"))
        self.assertIn(b"* 1 FETCH (UID 1 FLAGS (\\Flagged))", b.command(b"y NOOP"))

    def test_storeWithoutChange(self):
        """
        A STORE that changes nothing answers no FETCH for that message (as
        Dovecot); the others changed still get theirs.
        """
        s = IMAPSession(messages=[message(b"one"), message(b"two")])
        s.select()
        s.command(b"a STORE 1 +FLAGS (\\Flagged)")
        self.assertEqual(s.command(b"b STORE 1:2 +FLAGS (\\Flagged)"),
                         b"* 2 FETCH (FLAGS (\\Flagged))\r\nb OK STORE completed\r\n")
        self.assertEqual(s.command(b"c STORE 1 -FLAGS (\\Seen)"), b"c OK STORE completed\r\n")

    def test_appendToSelectedFolder(self):
        """
        APPEND to the folder the session has selected answers EXISTS (and
        RECENT) before its OK, as RFC 3501 6.3.11 asks and Dovecot does,
        without waiting for the store's event (the spool's comes within 2
        seconds); the event, when it comes, adds nothing.
        """
        s = IMAPSession(messages=[message(b"one")])
        s.select()
        events = []
        self.patch(s.store._watchers, "announce", lambda userid, e: events.extend(e))
        out = s.command(b"a APPEND INBOX {11+}\r\nSubject: x\r\n")
        self.assertTrue(out.startswith(b"* 2 EXISTS\r\n* 1 RECENT\r\na OK [APPENDUID "), out)
        s.protocol.view.eventReceived(events[0])
        self.assertEqual(s.command(b"b NOOP"), b"b OK NOOP completed\r\n")

    def test_appendedAndExpungedNotShownAgain(self):
        """
        A message the session APPENDed and then expunged itself is not shown
        again when the store's event for its delivery comes late (the
        spool's may): no second EXISTS, no message back from the dead.
        """
        s = IMAPSession(messages=[message(b"one")])
        s.select()
        events = []
        self.patch(s.store._watchers, "announce", lambda userid, e: events.extend(e))
        s.command(b"a APPEND INBOX (\\Deleted) {11+}\r\nSubject: x\r\n")
        self.assertIn(b"* 2 EXPUNGE\r\n", s.command(b"b EXPUNGE"))
        for event in events:
            if event.kind == "message":
                s.protocol.view.eventReceived(event)
        self.assertEqual(s.command(b"c NOOP"), b"c OK NOOP completed\r\n")
        self.assertEqual(len(s.protocol.view), 1)

    def test_newKeywordsAnnounced(self):
        """
        A keyword new to the folder is announced with FLAGS and
        PERMANENTFLAGS before the FETCH that shows it, once, to this session
        and, at its next command, to another; SELECT lists the folder's
        keywords in both.
        """
        store_ = IMAPSession(messages=[message(b"one")]).store
        a = IMAPSession(store=store_)
        b = IMAPSession(store=store_)
        a.select()
        b.select()
        flags = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work"
        announce = (b"* FLAGS (" + flags + b")\r\n* OK [PERMANENTFLAGS (" + flags +
                    b" \\*)] flags permitted\r\n")
        self.assertEqual(a.command(b"x STORE 1 +FLAGS ($Work)"),
                         announce + b"* 1 FETCH (FLAGS ($Work))\r\nx OK STORE completed\r\n")
        self.assertNotIn(b"* FLAGS", a.command(b"y STORE 1 FLAGS ($Work \\Seen)"))
        self.assertTrue(b.command(b"z NOOP").startswith(announce + b"* 1 FETCH (UID 1 FLAGS"))
        self.assertIn(announce, b.command(b"w SELECT INBOX"))

    def test_expungeNotDuringFetch(self):
        """
        An expunge made elsewhere is not announced during FETCH, STORE or
        SEARCH, and is at the next NOOP.
        """
        store_ = IMAPSession(messages=[message(b"one"), message(b"two")]).store
        a = IMAPSession(store=store_)
        b = IMAPSession(store=store_)
        a.select()
        b.select()
        a.command(b"x STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(a.command(b"y EXPUNGE"), b"* 1 EXPUNGE\r\ny OK EXPUNGE completed\r\n")
        out = b.command(b"f FETCH 1:* FLAGS")
        self.assertNotIn(b"EXPUNGE\r\n", out)
        self.assertIn(b"f NO [EXPUNGEISSUED]", out)
        self.assertNotIn(b"EXPUNGE\r\n", b.command(b"s SEARCH ALL"))
        self.assertIn(b"* 1 EXPUNGE", b.command(b"u UID SEARCH ALL"))

    def test_newMailAtNoop(self):
        """
        New mail is announced with EXISTS and RECENT at the next command.
        """
        s = IMAPSession(messages=[message(b"one")])
        s.select()
        s.store.deliverMessage("x@y", "bob", message(b"two"))
        self.assertIn(b"* 2 EXISTS\r\n* 1 RECENT\r\n", s.command(b"a NOOP"))

    def test_idle(self):
        """
        During IDLE, new mail, flag changes and expunges are sent at once;
        DONE ends it.
        """
        store_ = IMAPSession(messages=[message(b"one")]).store
        a = IMAPSession(store=store_)
        other = IMAPSession(store=store_)
        a.select()
        other.select()
        self.assertEqual(a.command(b"i IDLE"), b"+ idling\r\n")
        store_.deliverMessage("x@y", "bob", message(b"two"))
        self.assertIn(b"* 2 EXISTS", a.read())
        other.command(b"s STORE 1 +FLAGS (\\Deleted)")
        self.assertIn(b"* 1 FETCH (UID 1 FLAGS (\\Deleted))", a.read())
        other.command(b"e EXPUNGE")
        self.assertEqual(a.read(), b"* 1 EXPUNGE\r\n")
        self.assertEqual(a.command(b"DONE"), b"i OK IDLE terminated\r\n")

    def test_ownStoreNewerThanANotedChange(self):
        """
        A flag change noted from elsewhere before this session's own STORE
        (its snapshot older than the STORE) does not undo the STORE: the
        message flagged \\Deleted is expunged.
        """
        s = IMAPSession(messages=[message(b"one"), message(b"two")])
        s.select()
        view = s.protocol.view
        older = view.summaries[0].replace(flags=frozenset())
        setFlags = view.folder.setFlags

        def setThenNote(*args, **kwargs):
            d = setFlags(*args, **kwargs)
            # A change from an older look, noted before the STORE's answer.
            view.eventReceived(MailEvent("flags", "INBOX", summary=older))
            return d

        self.patch(view.folder, "setFlags", setThenNote)
        self.assertIn(b"T OK", s.command(b"T STORE 1 +FLAGS (\\Deleted)"))
        self.assertEqual(s.command(b"E EXPUNGE"), b"* 1 EXPUNGE\r\nE OK EXPUNGE completed\r\n")

    def test_serverStopSaysBye(self):
        """
        When the server stops, a client (here in IDLE) is told BYE and
        closed, and a command sent afterwards is not answered.
        """
        s = IMAPSession(messages=[message(b"one")])
        s.select()
        self.assertEqual(s.command(b"i IDLE"), b"+ idling\r\n")
        s.factory.endSessions()
        self.assertEqual(s.read(), b"* BYE server stopping\r\n")
        self.assertTrue(s.transport.disconnecting)
        self.assertEqual(s.command(b"DONE"), b"")

    def test_idleTimeoutAtLeast30Minutes(self):
        """
        An IDLE session is kept at least 30 minutes.
        """
        s = IMAPSession(idleTimeout=60)
        s.select()
        s.command(b"i IDLE")
        s.reactor.advance(29 * 60)
        self.assertFalse(s.transport.disconnecting)
        s.reactor.advance(2 * 60)
        self.assertTrue(s.transport.disconnecting)

    def test_copyMoveUidplus(self):
        """
        COPY answers COPYUID; MOVE answers COPYUID and EXPUNGEs the moved.
        """
        s = IMAPSession(messages=[message(b"%d" % i) for i in range(3)])
        s.select()
        self.assertRegex(s.command(b"a COPY 1:2 Archive"), rb"a OK \[COPYUID \d+ 1:2 1:2\]")
        out = s.command(b"b MOVE 2:3 Trash")
        self.assertRegex(out, rb"\* OK \[COPYUID \d+ 2:3 1:2\] moved\r\n"
                              rb"\* 2 EXPUNGE\r\n\* 2 EXPUNGE\r\nb OK MOVE completed")
        self.assertIn(b"c NO [TRYCREATE]", s.command(b"c COPY 1 Nope"))

    def test_uidExpunge(self):
        """
        UID EXPUNGE removes only the \\Deleted messages it names.
        """
        s = IMAPSession(messages=[message(b"%d" % i) for i in range(3)])
        s.select()
        s.command(b"a STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(s.command(b"b UID EXPUNGE 2"),
                         b"* 2 EXPUNGE\r\nb OK EXPUNGE completed\r\n")


class SearchTests(SynchronousTestCase):
    def test_keys(self):
        """
        SEARCH flags, text, header, size, NOT and OR keys.
        """
        s = IMAPSession(messages=[message(b"lunch"), message(b"meeting", b"agenda\n"),
                                  message(b"other")])
        s.select()
        s.command(b"a STORE 2 +FLAGS (\\Flagged)")
        self.assertIn(b"* SEARCH 2\r\n", s.command(b"b SEARCH FLAGGED"))
        self.assertIn(b"* SEARCH 1 3\r\n", s.command(b"c SEARCH UNFLAGGED"))
        self.assertIn(b"* SEARCH 2\r\n", s.command(b"d SEARCH BODY agenda"))
        self.assertIn(b"* SEARCH 1 3\r\n", s.command(b'e SEARCH OR SUBJECT lunch SUBJECT other'))
        self.assertIn(b"* SEARCH 3\r\n", s.command(b"f SEARCH NOT SUBJECT lunch UNFLAGGED 2:*"))
        self.assertIn(b"* SEARCH 2\r\n", s.command(b"g UID SEARCH HEADER Subject meet"))
        self.assertIn(b"* SEARCH 1 2 3\r\n", s.command(b"h SEARCH LARGER 10 SINCE 1-Jan-1990"))

    def test_textFindsAttachmentNames(self):
        """
        SEARCH TEXT finds an attachment's file name (Dovecot finds it in
        the part's header); BODY does not.
        """
        s = IMAPSession(messages=[message(b"a", b"x\n"), NESTED.replace(
            b"Content-Type: text/html\n", b"Content-Type: text/html; name=page.html\n"
            b"Content-Disposition: attachment; filename=page.html\n")])
        s.select()
        self.assertIn(b"* SEARCH 2\r\n", s.command(b"a SEARCH TEXT page.html"))
        self.assertIn(b"* SEARCH\r\n", s.command(b"b SEARCH BODY page.html"))

    def test_badKeys(self):
        """
        An unknown key or a bad date is BAD; an unknown charset is NO
        [BADCHARSET].
        """
        s = IMAPSession(messages=[message(b"x")])
        s.select()
        self.assertIn(b"a BAD", s.command(b"a SEARCH FROBS"))
        self.assertIn(b"b BAD", s.command(b"b SEARCH BEFORE 31-Feb-2020"))
        self.assertIn(b"c NO [BADCHARSET", s.command(b"c SEARCH CHARSET KOI8-R ALL"))
        self.assertIn(b"d BAD", s.command(b"d SEARCH " + b"NOT " * 500 + b"ALL"))

    def test_hugeSequenceSet(self):
        """
        A SEARCH with a 100,000-element sequence set is answered.
        """
        s = IMAPSession(messages=[message(b"%d" % i) for i in range(10)])
        s.select()
        numbers = b",".join(b"%d" % (i * 2 + 1) for i in range(100000))
        out = s.command(b"a UID SEARCH UID " + numbers)
        self.assertIn(b"* SEARCH 1 3 5 7 9\r\n", out)


class HostileTests(SynchronousTestCase):
    def test_deepParentheses(self):
        """
        Parentheses 10,000 deep are a BAD, and the session goes on.
        """
        s = IMAPSession()
        s.select()
        out = s.command(b"a FETCH 1 " + b"(" * 10000 + b")" * 10000)
        self.assertIn(b"a BAD", out)
        self.assertIn(b"b OK", s.command(b"b NOOP"))

    def test_millionRanges(self):
        """
        A sequence set of a million ranges exceeds the line limit: BYE and
        close.
        """
        s = IMAPSession(messages=[message(b"x")])
        s.select()
        numbers = b",".join(b"%d:%d" % (i, i + 1) for i in range(1, 1000001, 3))
        out = s.command(b"a FETCH " + numbers + b" FLAGS")
        self.assertIn(b"* BYE", out)
        self.assertTrue(s.transport.disconnecting)

    def test_badUTF7(self):
        """
        A folder name that is not modified UTF-7 is a NO; valid names
        round-trip through LIST.
        """
        s = IMAPSession()
        s.login()
        self.assertIn(b"a NO", s.command(b"a CREATE &Jjo!"))
        self.assertIn(b"b NO", s.command(b"b CREATE caf\xc3\xa9"))
        self.assertIn(b"c OK", s.command(b"c CREATE Entw&APw-rfe/&ZeVnLIqe-"))
        out = s.command(b'd LIST "" "Entw*"')
        self.assertIn(b'* LIST (\\Noselect \\HasChildren) "/" "Entw&APw-rfe"', out)
        self.assertIn(b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe/&ZeVnLIqe-"', out)
        self.assertIn("Entwürfe/日本語", [f.name for f in s.store.listFolders("bob").result])

    def test_neverChangesMessages(self):
        """
        None of the hostile inputs changes a stored message.
        """
        s = IMAPSession(messages=[message(b"keep")])
        before = s.store.messages("bob")
        s.select()
        for line in [b"a STORE 1 +FLAGS (\\Bogus)", b"b STORE 1 FLAGS (\"x\")",
                     b"c COPY 1 ../../etc", b"d FETCH 1 BODY[0]", b"e FETCH 1 BODY[1.0]",
                     b"f APPEND INBOX {x}", b"g UID FETCH 1:* (BODY[]<0.0>)"]:
            out = s.command(line)
            self.assertTrue(out.startswith(line[:1] + b" BAD") or out.startswith(line[:1] + b" NO"),
                            (line, out))
        self.assertEqual(s.store.messages("bob"), before)

    def test_limits(self):
        """
        The parser's limits stay as documented.
        """
        self.assertEqual(parser.MAX_DEPTH, 64)
        self.assertEqual(parser.MAX_LINE, 1024 * 1024)


class OptionsTests(SynchronousTestCase):
    def test_options(self):
        """
        --imap is repeatable and checked; the TLS files need --imap; the
        door is in the doors table.
        """
        from twisted.python import usage

        from twisted_mail.service.doors import DOORS, doorEndpoints
        from twisted_mail.service.options import Options

        spool = self.mktemp()
        o = Options()
        o.parseOptions(["--spool", spool, "--imap", "tcp:9143:interface=127.0.0.1",
                        "--imap", "tcp:9144"])
        self.assertEqual(o["imap"], ["tcp:9143:interface=127.0.0.1", "tcp:9144"])
        self.assertIn(("imap", "tcp:9144"), doorEndpoints(o))
        self.assertIn("imap", [d.option for d in DOORS])
        self.assertRaises(usage.UsageError, Options().parseOptions,
                          ["--spool", spool, "--imap", "tcp:nope"])
        self.assertRaises(usage.UsageError, Options().parseOptions,
                          ["--spool", spool, "--imap-tls-cert", "x.pem"])

    def test_idleTimeoutFloor(self):
        """
        The IMAP idle timeout is never under 30 minutes.
        """
        from twisted_mail.doors.imap.factory import IMAPFactory
        from twisted_mail.stores.memory import MemoryStore

        self.assertEqual(IMAPFactory(MemoryStore(), idleTimeout=60).idleTimeout, 1800)
        self.assertEqual(IMAPFactory(MemoryStore(), idleTimeout=7200).idleTimeout, 7200)
