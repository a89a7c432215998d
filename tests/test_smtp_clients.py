"""
Debian's C{swaks} (the Swiss army knife for SMTP) against the SMTP doors of
a real C{twistd -n simplemail}: ingress (C{--smtp}: local users, unknown
recipients, the size limit, C{PIPELINING}, dot-stuffing, 8-bit text) and
submission (C{--submission}: C{AUTH PLAIN} and C{AUTH LOGIN} over
C{STARTTLS} and on an C{ssl:} endpoint with passwords set by
C{simplemail-passwd}, and the refusals of docs/smtp.rst).  What swaks saw
(its exit status, the server's replies in its transcript) is checked with
what a user then finds: the message, read back with C{READM}.

swaks's own ways with the text it sends (C{--data @FILE}), which the tests
write around: it ends the text with CRLF C{.} CRLF after the file's last
byte, so a file ending in a line break gets one empty line more; it turns
a backslash followed by C{n}, and C{%TOKEN%}s, into other text; it drops a
first line starting C{From }.  It dot-stuffs every other line.
"""

import mailbox
import os
import re
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from .certs import makeCertificate
from .programs import needProgram, programEnvironment
from .serverprocess import ServerProcess, freePort, twistdEnvironment

#: Seconds one swaks (or simplemail-passwd) run may take.
TIMEOUT = 30

DOMAIN = "example.org"
MAX_SIZE = 20000

#: One line of a server reply in a swaks transcript: C{<-  250 ...} in clear,
#: C{<** 550 ...} for a reply swaks took as an error; C{<~  } and C{<~* }
#: under TLS.
_REPLY = re.compile(rb"^<[-~*][ *] (\d{3})([ -])(.*)$")

#: What simplemail puts before the text of a message from an ingress client
#: that gave its own Date: and Message-ID: (docs/smtp.rst, "What is stored").
_PREFIX = re.compile(
    rb"Return-Path: <(?P<sender>[^>\n]*)>\n"
    rb"Received: from client\.example \(\[127\.0\.0\.1\]\)\n"
    rb"\tby example\.org \(simplemail\) with (?P<with>ESMTPS?A?) id (?P<id>[0-9a-f]{16})"
    rb"(?:\n\tfor <(?P<for>[^>\n]+)>)?;\n"
    rb"\t[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000\n"
)


def replies(transcript):
    """
    The server's replies in a swaks transcript, as C{(code, text)}: one
    pair for each reply, the text of its last line.
    """
    found = []
    for line in transcript.splitlines():
        match = _REPLY.match(line)
        if match is not None and match.group(2) == b" ":
            found.append((int(match.group(1)), match.group(3)))
    return found


def replyLines(transcript):
    """
    Every line of every reply, as C{(code, text)} (for C{EHLO}'s list).
    """
    return [(int(m.group(1)), m.group(3))
            for m in map(_REPLY.match, transcript.splitlines()) if m is not None]


class SwaksServerProcess(ServerProcess):
    """
    A twistd server with an SMTP ingress listener and, given C{passwords},
    a plain (C{STARTTLS}) and an C{ssl:} submission listener, on loopback
    ports chosen afresh at every start.
    """

    def __init__(self, spool, certs, passwords=None):
        self.certs = certs
        self.passwords = passwords
        ServerProcess.__init__(self, spool, [
            "--domain", DOMAIN,
            "--max-message-size", str(MAX_SIZE),
            "--idle-timeout", "30",
            "--smtp-tls-cert", certs.child("cert.pem").path,
            "--smtp-tls-key", certs.child("key.pem").path,
        ] + (["--passwords", passwords] if passwords else []))

    def args(self, port):
        self.smtpPort = freePort()
        args = ServerProcess.args(self, port) + [
            "--smtp", "tcp:{}:interface=127.0.0.1".format(self.smtpPort)]
        if self.passwords:
            self.submissionPort = freePort()
            self.smtpsPort = freePort()
            args += [
                "--submission", "tcp:{}:interface=127.0.0.1".format(self.submissionPort),
                "--submission", "ssl:{}:interface=127.0.0.1:privateKey={}:certKey={}".format(
                    self.smtpsPort, self.certs.child("key.pem").path,
                    self.certs.child("cert.pem").path),
            ]
        return args


class SwaksTestCase(SynchronousTestCase):
    """
    A server for swaks, users bob and carol, and ways to run swaks and read
    a user's mail.
    """

    passwords = {}

    def setUp(self):
        needProgram("swaks", "swaks")
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)
        self.certs = makeCertificate(self.mktemp(), addresses=["127.0.0.1"])
        self.spool = os.path.abspath(self.mktemp())
        passwordFile = None
        if self.passwords:
            passwordFile = os.path.join(self.home, "passwords")
        self.server = SwaksServerProcess(self.spool, self.certs, passwordFile)
        self.addCleanup(self.server.close)
        self.server.start()
        self.addCleanup(self.assertCleanLog)
        if self.passwords:
            # The operator makes the accounts while the server runs.
            for userid, password in sorted(self.passwords.items()):
                self.setPassword(passwordFile, userid, password)
        else:
            with self.server.connect() as client:
                for userid in (b"bob", b"carol"):
                    self.assertTrue(client.command(b"ADDU " + userid).startswith(b"+OK"))

    def setPassword(self, path, userid, password):
        """
        Make C{userid}'s account with C{simplemail-passwd --spool}, as an
        operator would (the password read from a pipe).
        """
        done = subprocess.run(
            [sys.executable, "-m", "twisted_mail.service.passwd",
             "--spool", self.spool, path, userid],
            input=password.encode("utf-8") + b"\n", capture_output=True,
            env=twistdEnvironment(), timeout=TIMEOUT)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(
            done.stdout,
            "mailbox made for {0}\npassword set for {0}\n".format(userid).encode("ascii"))

    def assertCleanLog(self):
        log = self.server.log()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)

    def swaks(self, *args, port=None, data=None):
        """
        Run swaks against the ingress port (or C{port}), saying
        C{EHLO client.example}; C{data}, if given, is the whole message
        text, written to a file for C{--data @FILE}.

        @return: C{(exit status, transcript)}.
        """
        argv = ["swaks", "--server", "127.0.0.1",
                "--port", str(port or self.server.smtpPort),
                "--helo", "client.example", "--timeout", "20"]
        if data is not None:
            path = os.path.join(self.home, "data-{}".format(len(os.listdir(self.home))))
            with open(path, "wb") as f:
                f.write(data)
            argv += ["--data", "@" + path]
        done = subprocess.run(
            argv + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=programEnvironment(HOME=self.home),
            cwd=self.home, timeout=TIMEOUT)
        return done.returncode, done.stdout

    def read(self, userid):
        """
        The messages of C{userid}, read with READM over the line protocol.
        """
        with self.server.connect() as client:
            self.assertTrue(client.command(b"USER " + userid.encode()).startswith(b"+OK"))
            if self.passwords:
                reply = client.command(b"PASS " + self.passwords[userid].encode())
                self.assertTrue(reply.startswith(b"+OK"), reply)
            return client.readAll()

    def assertStored(self, stored, text, sender, recipient=None, with_=b"ESMTP"):
        """
        C{stored} (as READM gives it) is C{text} after the Return-Path: and
        Received: headers simplemail adds, naming C{sender}, C{recipient}
        (or no one) and C{with_}.

        @return: the transaction id of its Received: header.
        """
        match = _PREFIX.match(stored)
        self.assertIsNotNone(match, stored[:400])
        self.assertEqual(stored[match.end():], text)
        self.assertEqual(match.group("sender"), sender)
        self.assertEqual(match.group("for"), recipient)
        self.assertEqual(match.group("with"), with_)
        return match.group("id")


def message(subject, body=b"hello\n"):
    """
    A message text with Date: and Message-ID: (so that simplemail adds
    neither), LF line endings, without the last line's line break (swaks
    writes one before its C{.}).
    """
    return (
        b"From: Alice <alice@elsewhere.example>\n"
        b"To: bob@example.org\n"
        b"Date: Mon, 07 Dec 2026 09:00:00 +0000\n"
        b"Message-ID: <" + subject.replace(b" ", b".") + b"@elsewhere.example>\n"
        b"Subject: " + subject + b"\n"
        b"\n" + body
    ).rstrip(b"\n")


class IngressTests(SwaksTestCase):
    """
    swaks against C{--smtp}: no authentication, local users only.
    """

    def test_deliver(self):
        """
        swaks delivers a message to a local user and exits 0; the user
        finds it whole, after Return-Path: and a Received: header naming the
        transaction swaks was told of; the mbox From_ line has the envelope
        sender.
        """
        text = message(b"one recipient")
        status, transcript = self.swaks(
            "--from", "alice@elsewhere.example", "--to", "bob@example.org", data=text)
        self.assertEqual(status, 0, transcript)
        codes = [code for code, _ in replies(transcript)]
        self.assertEqual(codes, [220, 250, 250, 250, 354, 250, 221])
        self.assertIn((250, b"SIZE %d" % MAX_SIZE), replyLines(transcript))
        stored = replies(transcript)[-2][1]
        [mail] = self.read("bob")
        transaction = self.assertStored(
            mail, text + b"\n", b"alice@elsewhere.example", b"bob@example.org")
        self.assertEqual(stored, b"message stored (id " + transaction + b")")
        box = mailbox.mbox(os.path.join(self.spool, "bob"), create=False)
        try:
            [kept] = list(box)
        finally:
            box.close()
        self.assertTrue(kept.get_from().startswith("alice@elsewhere.example "))
        self.assertEqual(self.read("carol"), [])

    def test_severalRecipients(self):
        """
        With an unknown user among its recipients, swaks is told 550 for it
        alone and exits 0; each known recipient gets one copy, whose
        Received: header names no recipient.
        """
        text = message(b"several")
        status, transcript = self.swaks(
            "--from", "alice@elsewhere.example",
            "--to", "bob@example.org,nobody@example.org,Carol@EXAMPLE.org", data=text)
        self.assertEqual(status, 0, transcript)
        self.assertEqual(replies(transcript)[3:7], [
            (250, b"Recipient address accepted"),
            (550, b"no such user here"),
            (250, b"Recipient address accepted"),
            (354, b"send the message, end with <CR><LF>.<CR><LF>"),
        ])
        for userid in ("bob", "carol"):
            [mail] = self.read(userid)
            self.assertStored(mail, text + b"\n", b"alice@elsewhere.example")

    def test_unknownRecipient(self):
        """
        A message for an unknown user, or for another domain, is refused
        at RCPT with a reply that says why; swaks exits 24 ("no RCPTs
        accepted") and nothing is stored.
        """
        for recipient, reply in [("nobody@example.org", b"no such user here"),
                                 ("bob@elsewhere.example", b"relaying denied")]:
            status, transcript = self.swaks(
                "--from", "alice@elsewhere.example", "--to", recipient)
            self.assertEqual(status, 24, transcript)
            [(code, text)] = [r for r in replies(transcript) if r[0] >= 500]
            self.assertEqual(code, 550)
            self.assertIn(reply, text)
        self.assertEqual(self.read("bob"), [])

    def test_tooLarge(self):
        """
        A message over --max-message-size is refused after its final dot
        with 552, swaks exits 26 ("server did not accept mail following
        data") and nothing is stored; one just under it is stored.
        """
        line = b"x" * 70 + b"\n"
        status, transcript = self.swaks(
            "--from", "alice@elsewhere.example", "--to", "bob@example.org",
            "--suppress-data", data=message(b"big", line * (MAX_SIZE // len(line))))
        self.assertEqual(status, 26, transcript)
        self.assertEqual(replies(transcript)[-2], (
            552, b"message too large (limit %d bytes); nothing was stored" % MAX_SIZE))
        self.assertEqual(self.read("bob"), [])
        text = message(b"not so big", line * (MAX_SIZE // len(line) - 20))
        status, transcript = self.swaks(
            "--from", "alice@elsewhere.example", "--to", "bob@example.org",
            "--suppress-data", data=text)
        self.assertEqual(status, 0, transcript)
        [mail] = self.read("bob")
        self.assertStored(mail, text + b"\n", b"alice@elsewhere.example", b"bob@example.org")

    def test_pipeline(self):
        """
        With --pipeline swaks sends MAIL, every RCPT and DATA before reading
        a reply; the replies come in order, the unknown recipient's 550
        among them, and the message is stored once for each known one.
        With no recipient accepted, the pipelined DATA gets 503.
        """
        text = message(b"pipelined")
        status, transcript = self.swaks(
            "--pipeline", "--from", "alice@elsewhere.example",
            "--to", "bob@example.org,nobody@example.org,carol@example.org", data=text)
        self.assertEqual(status, 0, transcript)
        lines = transcript.splitlines()
        self.assertEqual(lines.index(b" -> DATA") + 1,
                         lines.index(b"<-  250 Sender address accepted"))
        self.assertEqual([code for code, _ in replies(transcript)],
                         [220, 250, 250, 250, 550, 250, 354, 250, 221])
        self.assertEqual(len(self.read("bob")), 1)
        self.assertEqual(len(self.read("carol")), 1)
        status, transcript = self.swaks(
            "--pipeline", "--from", "alice@elsewhere.example", "--to", "nobody@example.org")
        self.assertEqual(status, 24, transcript)
        self.assertEqual([code for code, _ in replies(transcript)],
                         [220, 250, 250, 550, 503, 221])

    def test_dotsAnd8bit(self):
        """
        Lines of a single dot, of leading dots and of 8-bit bytes (UTF-8
        and not) go through swaks's dot-stuffing and our unstuffing and
        reach the mailbox byte for byte, as does a body line starting
        "From " (quoted only inside the mbox file).
        """
        body = (b".\n..\n.leading dot\n..two leading dots\n...\n. \n"
                b"caf\xc3\xa9 \xff\xfe\x80 8-bit\nFrom here, a line\n  trailing  \nend")
        text = message(b"dots", body)
        for pipeline in ((), ("--pipeline",)):
            status, transcript = self.swaks(
                "--from", "alice@elsewhere.example", "--to", "bob@example.org",
                *pipeline, data=text)
            self.assertEqual(status, 0, transcript)
            # The text as swaks sent it: CRLF lines, dot-stuffed.
            self.assertIn(b" -> \r\n -> ..\r\n -> ...\r\n -> ..leading dot\r\n", transcript)
        for mail in self.read("bob"):
            self.assertStored(mail, text + b"\n", b"alice@elsewhere.example",
                              b"bob@example.org")
        with open(os.path.join(self.spool, "bob"), "rb") as f:
            self.assertIn(b"\n>From here, a line\n", f.read())


class SubmissionTests(SwaksTestCase):
    """
    swaks against C{--submission}: AUTH over TLS with passwords set by
    C{simplemail-passwd}, the sender bound to the user.
    """

    passwords = {"bob": "bob's secret", "carol": "carol pw"}

    def submit(self, *args, user="bob", password=None, tls=("-tls",), data=None,
               sender="bob@example.org", port=None):
        """
        swaks on the STARTTLS submission port (or C{port}), checking the
        certificate, logging in as C{user} unless C{password} is C{False}.
        """
        auth = ()
        if password is not False:
            auth = ("--auth-user", user,
                    "--auth-password", password or self.passwords[user])
        return self.swaks(
            "--from", sender, "--to", "carol@example.org", *tls,
            "--tls-verify", "--tls-ca-path", self.certs.child("cert.pem").path,
            *auth, *args, port=port or self.server.submissionPort, data=data)

    def assertSubmitted(self, transcript, text):
        """
        carol has exactly C{text}, from bob, by ESMTPSA.
        """
        [mail] = self.read("carol")
        self.assertStored(mail, text + b"\n", b"bob@example.org", b"carol@example.org",
                          with_=b"ESMTPSA")

    def test_authPlain(self):
        """
        STARTTLS then AUTH PLAIN: AUTH is offered only after STARTTLS, the
        login is accepted (235), the message is delivered and swaks exits 0.
        """
        text = message(b"plain").replace(b"Alice <alice@elsewhere.example>",
                                         b"Bob <bob@example.org>")
        status, transcript = self.submit("--auth", "PLAIN", data=text)
        self.assertEqual(status, 0, transcript)
        lines = replyLines(transcript)
        tls = lines.index((220, b"ready to start TLS"))
        self.assertNotIn((250, b"AUTH PLAIN LOGIN"), lines[:tls])
        self.assertIn((250, b"AUTH PLAIN LOGIN"), lines[tls:])
        self.assertIn((235, b"authentication successful"), lines)
        self.assertSubmitted(transcript, text)

    def test_authLogin(self):
        """
        AUTH LOGIN asks for the user name and the password (base64) and
        logs in; a password with a quote and a space works.
        """
        text = message(b"login").replace(b"Alice <alice@elsewhere.example>",
                                         b"bob@example.org")
        status, transcript = self.submit("--auth", "LOGIN", data=text)
        self.assertEqual(status, 0, transcript)
        codes = replies(transcript)
        self.assertIn((334, b"VXNlcm5hbWU6"), codes)
        self.assertIn((334, b"UGFzc3dvcmQ6"), codes)
        self.assertIn((235, b"authentication successful"), codes)
        self.assertSubmitted(transcript, text)

    def test_tlsOnConnect(self):
        """
        On an ssl: submission endpoint (swaks --tls-on-connect) AUTH is
        offered at once.
        """
        status, transcript = self.submit(
            "--auth", "PLAIN", port=self.server.smtpsPort, tls=("-tlsc",),
            data=message(b"smtps").replace(b"Alice <alice@elsewhere.example>",
                                           b"bob@example.org"))
        self.assertEqual(status, 0, transcript)
        self.assertIn((250, b"AUTH PLAIN LOGIN"), replyLines(transcript))
        self.assertEqual(len(self.read("carol")), 1)

    def test_wrongPassword(self):
        """
        A wrong password gets 535 (after the throttle's delay), swaks exits
        28 ("error in AUTH transaction") and nothing is sent.
        """
        status, transcript = self.submit("--auth", "PLAIN", password="bob pw")
        self.assertEqual(status, 28, transcript)
        self.assertIn((535, b"authentication failed"), replies(transcript))
        self.assertEqual(self.read("carol"), [])

    def test_noAuthWithoutTLS(self):
        """
        Without STARTTLS no AUTH is offered (swaks exits 28: "Host did not
        advertise authentication"), and MAIL without AUTH gets 530 (swaks
        exits 23); nothing is sent.  (swaks never sends an AUTH the server
        did not offer: the 538 for one sent in clear anyway is
        tests/test_submission.py's.)
        """
        status, transcript = self.submit("--auth", "PLAIN", tls=())
        self.assertEqual(status, 28, transcript)
        self.assertIn(b"Host did not advertise authentication", transcript)
        self.assertFalse([t for _, t in replyLines(transcript) if t.startswith(b"AUTH")])
        status, transcript = self.submit(password=False, tls=())
        self.assertEqual(status, 23, transcript)
        self.assertIn((530, b"Must issue a STARTTLS command first"), replies(transcript))
        status, transcript = self.submit(password=False)
        self.assertEqual(status, 23, transcript)
        self.assertIn((530, b"authentication required: use AUTH first"),
                      replies(transcript))
        self.assertEqual(self.read("carol"), [])

    def test_senderRule(self):
        """
        Logged in as bob, another envelope sender gets 553 (swaks exits 23)
        and a From: naming someone else 550 5.7.1 after the dot (swaks
        exits 26); nothing is sent.  Without a From: of its own (swaks's
        default text has bob's), the message gets bob's.
        """
        status, transcript = self.submit("--auth", "PLAIN", sender="carol@example.org")
        self.assertEqual(status, 23, transcript)
        self.assertIn((553, b"Cannot receive from specified address <carol@example.org>: "
                            b"you may send only as bob@example.org"), replies(transcript))
        status, transcript = self.submit(
            "--auth", "PLAIN", "--header", "From: The CEO <carol@example.org>")
        self.assertEqual(status, 26, transcript)
        self.assertIn((550, b"5.7.1 From: and Sender: may name only you (bob@example.org), "
                            b"not carol@example.org; nothing was sent"),
                      replies(transcript))
        self.assertEqual(self.read("carol"), [])
        text = b"Subject: no From\n\nanonymous?"
        status, transcript = self.submit("--auth", "PLAIN", sender="BOB@localhost", data=text)
        self.assertEqual(status, 0, transcript)
        [mail] = self.read("carol")
        self.assertIn(b"\nFrom: bob@example.org\nMessage-ID: <", mail)
        self.assertTrue(mail.startswith(b"Return-Path: <BOB@localhost>\n"), mail)
        self.assertTrue(mail.endswith(b"\n\nanonymous?\n"), mail)
