"""
POP3 differential tests: the same scripted sessions against simplemail's
POP3 door (a real C{twistd simplemail --pop3} on a spool) and Debian's
Dovecot 2.3 (mbox), holding the same messages (L{tests.differential}: the
same mbox file as each user's INBOX), and the answers compared.

What legitimately differs is normalised away by L{status}: the human text
after C{+OK}/C{-ERR} (except where RFC 1939 fixes it: C{STAT}, C{LIST n},
C{UIDL n}, and a response code in brackets), the capability lists beyond
what clients rely on, and the unique-id values (only that each message
has one, unique and kept across sessions). Data lines (listings, message
text, dot-stuffing) are compared byte for byte. Each command's expected
status is checked against Dovecot.
"""

import re

from twisted.trial.unittest import SynchronousTestCase

from .differential import IMAPClient, POP3Client, PairMixin

#: The capabilities both must list (RFC 2449), before and after the login.
CORE_CAPABILITIES = {b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING", b"AUTH-RESP-CODE"}

#: Commands whose status line is data, not text.
_EXACT = re.compile(rb"(STAT|LIST \S+|UIDL \S+)\Z", re.IGNORECASE)


def status(line, command):
    """
    A status line as a comparable value: C{+OK} or C{-ERR}, its response
    code, and for STAT, LIST n and UIDL n the data it carries (the
    unique id itself replaced by C{"id"}).
    """
    ok = line.startswith(b"+OK")
    text = line[3 if ok else 4:].strip()
    if ok and _EXACT.match(command):
        words = text.split()
        if command.upper().startswith(b"UIDL"):
            words = words[:1] + [b"id"] * len(words[1:])
        return ("+OK", tuple(words))
    code = re.match(rb"\[([^\]]*)\]", text)
    return ("+OK" if ok else "-ERR", code.group(1) if code else None)


class Both:
    """
    One POP3 connection to each server: each command goes to both and the
    answers must agree.
    """

    def __init__(self, case):
        self.case = case
        self.dovecot = POP3Client(case.pair.dovecot.pop3Port)
        case.addCleanup(self.dovecot.close)
        self.simplemail = POP3Client(case.pair.simplemail.pop3Port)
        case.addCleanup(self.simplemail.close)
        case.assertEqual([c.greeting[:4] for c in (self.dovecot, self.simplemail)],
                         [b"+OK "] * 2)

    def check(self, line, expect="+OK", multiline=False):
        """
        Send C{line} to both; Dovecot's status must be C{expect}, and the
        normalised status and data lines the same.

        @return: the data lines (L{None} for a one-line answer).
        """
        d = self.dovecot.command(line, multiline)
        s = self.simplemail.command(line, multiline)
        self.case.assertEqual(status(d[0], line)[0], expect, (line, d))
        self.case.assertEqual((status(s[0], line), s[1]), (status(d[0], line), d[1]),
                              "{!r}: Dovecot {!r}, simplemail {!r}".format(line, d, s))
        return d[1]

    def login(self, user):
        self.check(b"USER " + user.encode())
        self.check(b"PASS secret")

    def uidl(self):
        """
        The unique ids of each side, checked for presence and uniqueness.
        """
        found = []
        for client in (self.dovecot, self.simplemail):
            answer, lines = client.command(b"UIDL", True)
            self.case.assertTrue(answer.startswith(b"+OK"), answer)
            pairs = [line.split() for line in lines]
            self.case.assertTrue(all(len(p) == 2 for p in pairs), lines)
            ids = [p[1] for p in pairs]
            self.case.assertEqual(len(set(ids)), len(ids), ids)
            # RFC 1939 7: 1 to 70 characters from 0x21 to 0x7E.
            self.case.assertTrue(all(re.match(rb"[\x21-\x7e]{1,70}\Z", i) for i in ids), ids)
            found.append(([int(p[0]) for p in pairs], ids))
        self.case.assertEqual(found[0][0], found[1][0])
        return found[0][1], found[1][1]


class DovecotPOP3Tests(PairMixin, SynchronousTestCase):
    def both(self, login=True):
        b = Both(self)
        if login:
            b.login(self.user)
        return b

    def test_capabilities(self):
        """
        CAPA before and after the login lists what clients rely on (TOP,
        UIDL, RESP-CODES, PIPELINING, AUTH-RESP-CODE; USER before it).
        """
        b = self.both(login=False)
        for when in ("before", "after"):
            for client in (b.dovecot, b.simplemail):
                answer, lines = client.command(b"CAPA", True)
                self.assertTrue(answer.startswith(b"+OK"), answer)
                names = {line.split()[0] for line in lines}
                wanted = CORE_CAPABILITIES | ({b"USER"} if when == "before" else set())
                self.assertEqual(names & wanted, wanted, (when, lines))
            if when == "before":
                b.login(self.user)

    def test_listings(self):
        """
        STAT, LIST and LIST n agree to the octet (CRLF line ends, before
        dot-stuffing); UIDL lists a unique id for every message.
        """
        b = self.both()
        b.check(b"STAT")
        b.check(b"LIST", multiline=True)
        for n in range(1, 7):
            b.check(b"LIST %d" % n)
            b.check(b"UIDL %d" % n)
        dovecot, simplemail = b.uidl()
        self.assertEqual((len(dovecot), len(simplemail)), (6, 6))

    def test_retrieve(self):
        """
        RETR and TOP (0 and 3 lines) give the same text, dot-stuffed the
        same, for every message.
        """
        b = self.both()
        for n in range(1, 7):
            b.check(b"RETR %d" % n, multiline=True)
            b.check(b"TOP %d 0" % n, multiline=True)
            b.check(b"TOP %d 3" % n, multiline=True)
        b.check(b"TOP 5 1000", multiline=True)

    def test_deleteAndReset(self):
        """
        DELE hides a message from STAT, LIST, UIDL and RETR; a second DELE
        fails; RSET brings everything back.
        """
        b = self.both()
        b.check(b"DELE 1")
        b.check(b"DELE 3")
        b.check(b"STAT")
        b.check(b"LIST", multiline=True)
        for line in (b"DELE 1", b"RETR 1", b"TOP 3 0", b"LIST 1", b"UIDL 3"):
            b.check(line, "-ERR", multiline=line.startswith((b"RETR", b"TOP")))
        self.assertEqual([len(ids) for ids in b.uidl()], [4, 4])
        b.check(b"RSET")
        b.check(b"STAT")
        b.check(b"LIST", multiline=True)
        self.assertEqual([len(ids) for ids in b.uidl()], [6, 6])
        b.check(b"NOOP")

    def test_deleteAndQuit(self):
        """
        DELE then QUIT deletes; the next session sees the messages that are
        left, numbered from 1, with the unique ids they had.
        """
        b = self.both()
        before = b.uidl()
        b.check(b"DELE 2")
        b.check(b"DELE 5")
        b.check(b"QUIT")
        for client in (b.dovecot, b.simplemail):
            self.assertTrue(client.closed(), client)
        b = self.both()
        b.check(b"STAT")
        b.check(b"LIST", multiline=True)
        b.check(b"RETR 4", multiline=True)
        after = b.uidl()
        for was, now in zip(before, after):
            self.assertEqual([was[i] for i in (0, 2, 3, 5)], now)

    def test_seenThroughIMAP(self):
        """
        RETR marks the message read and TOP does not, as IMAP shows after
        the POP3 session ends.
        """
        b = self.both()
        b.check(b"TOP 1 0", multiline=True)
        b.check(b"RETR 2", multiline=True)
        b.check(b"QUIT")
        flags = []
        for port in (self.pair.dovecot.imapPort, self.pair.simplemail.imapPort):
            client = IMAPClient(port)
            self.addCleanup(client.close)
            client.login(self.user)
            client.command(b"EXAMINE INBOX")
            answer = client.command(b"FETCH 1:3 FLAGS")
            flags.append([b"\\Seen" in line for line in answer[:-1]])
        self.assertEqual(flags, [[False, True, False]] * 2)

    def test_errors(self):
        """
        Commands before the login, bad and missing message numbers, an
        unknown command and wrong argument counts get -ERR from both, and
        the session goes on.
        """
        b = self.both(login=False)
        b.check(b"PASS secret", "-ERR")
        b.check(b"NOOP", "-ERR")
        b.login(self.user)
        # (Another POP3 session of the user waits for this one's mbox lock
        # in Dovecot.)
        b.check(b"QUIT")
        b = self.both(login=False)
        for line in (b"STAT", b"LIST", b"RETR 1"):
            b.check(line, "-ERR")
        # A fourth bad command before the login: Dovecot says "-ERR Too many
        # invalid bad commands." and closes (against other protocols' clients
        # talking to it); simplemail answers every bad command and goes on,
        # as all its doors do (docs/pop3.rst).
        self.assertEqual([status(c.command(b"FROB")[0], b"FROB") for c in (
            b.dovecot, b.simplemail)], [("-ERR", None)] * 2)
        self.assertEqual([b.dovecot.closed(), b.simplemail.closed(0.2)], [True, False])
        self.assertEqual(b.simplemail.command(b"CAPA", True)[0][:3], b"+OK")
        b = self.both()
        for line in (b"RETR 0", b"RETR 999", b"RETR x", b"TOP 1", b"TOP 999 0",
                     b"LIST 0", b"LIST 7", b"DELE x", b"DELE 999", b"UIDL 999", b"FROB",
                     b"USER " + self.user.encode(), b"RETR"):
            b.check(line, "-ERR")
        b.check(b"STAT")

    def test_pipelining(self):
        """
        Commands sent in one packet are answered in order, the same way.
        """
        b = self.both()
        answers = []
        for client in (b.dovecot, b.simplemail):
            client.send(b"STAT\r\nLIST 2\r\nUIDL 9\r\nTOP 4 0\r\nNOOP\r\n")
            lines = [client.line() for _ in range(3)]
            lines.append(client.line())
            while lines[-1] != b".\r\n":
                lines.append(client.line())
            lines.append(client.line())
            answers.append([status(lines[0], b"STAT"), status(lines[1], b"LIST 2"),
                            status(lines[2], b"UIDL 9"), lines[3][:3]] + lines[4:-1]
                           + [status(lines[-1], b"NOOP")])
        self.assertEqual(answers[0], answers[1])
