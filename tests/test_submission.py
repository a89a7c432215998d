"""
Tests for SMTP submission (L{twisted_mail.doors.smtp.submission}): AUTH PLAIN and
LOGIN only on protected connections, the sender bound to the user, local
recipients only; unit tests on string transports and end-to-end with
C{smtplib} against a real C{twistd -n simplemail --submission ...}.
"""

import base64
import os
import smtplib
import ssl

from twisted.cred.credentials import IUsernamePassword
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.serverprocess import ServerProcess, freePort
from tests.test_auth import SynchronousClock
from tests.test_smtp import (
    DOMAIN,
    HOST,
    IDLE,
    LIMIT,
    PEER,
    Client,
    RecordingStore,
    TLSStringTransport,
    makeCertificate,
    stuff,
)
from twisted_mail.logins import portal as auth
from twisted_mail.service import tap
from twisted_mail.logins import throttle
from twisted_mail.doors.smtp import makeSMTPFactory

#: Seconds any one network step of the end-to-end tests may take.
WAIT = 30


def b64(data):
    return base64.b64encode(data)


def plain(user, password, authzid=b""):
    return b64(authzid + b"\0" + user + b"\0" + password)


@implementer(ISSLTransport)
class SSLStringTransport(StringTransport):
    """
    A string transport that is TLS from the start, as on an C{ssl:}
    endpoint.
    """


class SubmissionTestCase(SynchronousTestCase):
    """
    A store with bob and carol, passwords for bob ("bob pw") and carol, and
    submission listeners built with the throttled portal of L{auth}.
    """

    def setUp(self):
        self.clock = SynchronousClock()
        self.clock.advance(1785000000)
        self.store = RecordingStore(domain=DOMAIN, maxMessageSize=LIMIT * 2)
        for userid in ("bob", "carol"):
            self.store.addUser(userid)
        self.passwords = auth.PasswordFile(self.mktemp())
        self.passwords.setPassword("bob", "bob pw")
        self.passwords.setPassword("carol", "carol pw")
        self.portal = auth.makePortal(self.passwords, reactor=self.clock)

    def connect(self, transport=None, submission=True):
        factory = makeSMTPFactory(
            self.store,
            DOMAIN,
            LIMIT,
            IDLE,
            reactor=self.clock,
            tlsContextFactory=object(),
            portal=self.portal,
            submission=submission,
        )
        protocol = factory.buildProtocol(PEER)
        if transport is None:
            transport = TLSStringTransport(peerAddress=PEER, hostAddress=HOST)
        protocol.makeConnection(transport)
        client = Client(protocol, transport)
        client.replies()
        return client

    def protected(self):
        """
        A submission connection after EHLO and STARTTLS.
        """
        client = self.connect()
        client.command(b"EHLO c")
        self.assertEqual(client.codes(b"STARTTLS\r\n"), [220])
        return client

    def settle(self, client, data):
        """
        Send C{data} and let the clock run past the throttle's delays.

        @return: the replies.
        """
        client.protocol.dataReceived(data)
        self.clock.pump([0.5] * 20)
        return client.replies()

    def login(self, client, user=b"bob", password=b"bob pw"):
        return self.settle(client, b"AUTH PLAIN " + plain(user, password) + b"\r\n")


class AuthOfferTests(SubmissionTestCase):
    def test_notOfferedInClear(self):
        """
        On a plain connection EHLO offers STARTTLS but not AUTH.
        """
        client = self.connect()
        replies = client.command(b"EHLO c")
        self.assertIn((250, b"STARTTLS"), replies)
        self.assertFalse([text for code, text in replies if text.startswith(b"AUTH")])

    def test_offeredAfterSTARTTLS(self):
        """
        After STARTTLS, EHLO offers AUTH PLAIN LOGIN.
        """
        client = self.protected()
        self.assertIn((250, b"AUTH PLAIN LOGIN"), client.command(b"EHLO c"))

    def test_offeredOnSSLEndpoint(self):
        """
        A connection that is TLS from the start offers AUTH at once.
        """
        client = self.connect(transport=SSLStringTransport(peerAddress=PEER))
        self.assertIn((250, b"AUTH PLAIN LOGIN"), client.command(b"EHLO c"))

    def test_authInClearRefused(self):
        """
        AUTH on a plain connection is refused with 538 and checks nothing,
        and MAIL gets 530: STARTTLS first.
        """
        client = self.connect()
        client.command(b"EHLO c")
        [(code, text)] = client.command(b"AUTH PLAIN " + plain(b"bob", b"bob pw"))
        self.assertEqual(code, 538)
        self.assertIn(b"STARTTLS", text)
        [(code, text)] = client.command(b"MAIL FROM:<bob@example.org>")
        self.assertEqual((code, text), (530, b"Must issue a STARTTLS command first"))

    def test_ingressHasNoAuth(self):
        """
        An ingress (--smtp) connection still answers AUTH 502, even over TLS.
        """
        client = self.connect(submission=False)
        client.command(b"EHLO c")
        client.command(b"STARTTLS")
        self.assertEqual(client.codes(b"AUTH PLAIN AGJvYgBib2IgcHc=\r\n"), [502])

    def test_submissionNeedsPortal(self):
        """
        A submission listener cannot be made without passwords.
        """
        self.assertRaises(
            ValueError, makeSMTPFactory, self.store, DOMAIN, LIMIT, IDLE,
            reactor=self.clock, submission=True,
        )


class AuthTests(SubmissionTestCase):
    def test_mailBeforeAuth(self):
        """
        MAIL before AUTH gets 530 on a protected connection.
        """
        client = self.protected()
        client.command(b"EHLO c")
        [(code, text)] = client.command(b"MAIL FROM:<bob@example.org>")
        self.assertEqual(code, 530)
        self.assertIn(b"AUTH", text)

    def test_plainInitialResponse(self):
        """
        AUTH PLAIN with an initial response logs in (235).
        """
        client = self.protected()
        self.assertEqual(self.login(client), [(235, b"authentication successful")])
        self.assertEqual(client.protocol.authenticatedUser, "bob")

    def test_plainChallenge(self):
        """
        AUTH PLAIN without an initial response gets an empty 334 challenge
        and then takes the response.
        """
        client = self.protected()
        self.assertEqual(client.command(b"AUTH PLAIN"), [(334, b"")])
        self.assertEqual(
            self.settle(client, plain(b"BOB", b"bob pw") + b"\r\n"),
            [(235, b"authentication successful")],
        )
        self.assertEqual(client.protocol.authenticatedUser, "bob")

    def test_login(self):
        """
        AUTH LOGIN asks for the user name and then the password.
        """
        client = self.protected()
        self.assertEqual(client.command(b"AUTH LOGIN"), [(334, b64(b"Username:"))])
        self.assertEqual(client.command(b64(b"carol")), [(334, b64(b"Password:"))])
        self.assertEqual(
            self.settle(client, b64(b"carol pw") + b"\r\n"),
            [(235, b"authentication successful")],
        )

    def test_loginInitialResponse(self):
        """
        AUTH LOGIN may carry the user name (as smtplib sends it).
        """
        client = self.protected()
        self.assertEqual(
            client.command(b"AUTH LOGIN " + b64(b"carol")), [(334, b64(b"Password:"))]
        )
        self.assertEqual(self.settle(client, b64(b"carol pw") + b"\r\n")[0][0], 235)

    def test_wrongPassword(self):
        """
        A wrong password, an unknown user and another user's password all
        get 535, only after the throttle's delay.
        """
        client = self.protected()
        client.protocol.dataReceived(b"AUTH PLAIN " + plain(b"bob", b"nope") + b"\r\n")
        self.assertEqual(client.replies(), [])
        self.clock.advance(throttle.FAILURE_DELAY)
        self.assertEqual(client.replies(), [(535, b"authentication failed")])
        self.assertEqual(self.login(client, b"nobody", b"bob pw")[0][0], 535)
        self.assertIsNone(client.protocol.authenticatedUser)

    def test_closedAfterTooManyFailures(self):
        """
        The third failed AUTH on a connection closes it with 421.
        """
        client = self.protected()
        for attempt in range(throttle.MAX_FAILURES_PER_CONNECTION - 1):
            self.assertEqual(self.login(client, b"bob", b"nope")[0][0], 535)
            self.assertFalse(client.closed)
        replies = self.login(client, b"bob", b"nope")
        self.assertEqual([code for code, _ in replies], [535, 421])
        self.assertTrue(client.closed)

    def test_badResponses(self):
        """
        A response that is not base64, a malformed PLAIN response, a
        cancelled exchange and an unknown mechanism each get a 5xx, and the
        connection keeps working.
        """
        client = self.protected()
        self.assertEqual(client.codes(b"AUTH PLAIN !!notbase64\r\n"), [501])
        self.assertEqual(client.codes(b"AUTH PLAIN " + b64(b"no nul here") + b"\r\n"), [501])
        self.assertEqual(client.codes(b"AUTH LOGIN\r\n*\r\n"), [334, 501])
        self.assertEqual(client.codes(b"AUTH CRAM-MD5\r\n"), [504])
        self.assertEqual(client.codes(b"AUTH\r\n"), [501])
        self.assertEqual(self.login(client)[0][0], 235)

    def test_hostileInput(self):
        """
        Garbage bytes in an AUTH exchange get 501 and the connection keeps
        working; a 70 KiB response line gets 500 and the connection is
        closed, nothing of it checked.
        """
        client = self.protected()
        self.assertEqual(client.codes(b"AUTH LOGIN\r\n\xff\xfe\x00garbage\r\n"), [334, 501])
        self.assertEqual(client.codes(b"AUTH PLAIN \x80\x81\r\n"), [501])
        self.assertEqual(client.codes(b"AUTH PLAIN\r\n"), [334])
        self.assertEqual(client.codes(b"A" * 70 * 1024 + b"\r\n"), [500])
        self.assertTrue(client.closed)
        self.assertEqual(self.portal.checkers[IUsernamePassword].userScore(b"bob"), 0)

    def test_otherAuthorizationIdentity(self):
        """
        PLAIN with another user as the authorization identity is refused:
        nobody acts for another user.
        """
        client = self.protected()
        replies = self.settle(
            client, b"AUTH PLAIN " + plain(b"bob", b"bob pw", authzid=b"carol") + b"\r\n"
        )
        self.assertEqual(replies[0][0], 535)
        self.assertIsNone(client.protocol.authenticatedUser)

    def test_authOnce(self):
        """
        A second AUTH after a successful one gets 503.
        """
        client = self.protected()
        self.login(client)
        self.assertEqual(client.codes(b"AUTH PLAIN " + plain(b"carol", b"carol pw") + b"\r\n"), [503])
        self.assertEqual(client.protocol.authenticatedUser, "bob")

    def test_pipelinedMailWaitsForAuth(self):
        """
        MAIL pipelined after AUTH is answered after AUTH's result, as the
        authenticated user.
        """
        client = self.protected()
        replies = self.settle(
            client,
            b"AUTH PLAIN " + plain(b"bob", b"bob pw") + b"\r\n"
            b"MAIL FROM:<bob@example.org>\r\n",
        )
        self.assertEqual([code for code, _ in replies], [235, 250])


class SenderTests(SubmissionTestCase):
    def authenticated(self):
        client = self.protected()
        self.assertEqual(self.login(client)[0][0], 235)
        client.command(b"EHLO c")
        return client

    def test_sendAsSelf(self):
        """
        The authenticated user sends as <user>@<domain> to a local user; the
        message is stored durably before 250 and its Received: says
        ESMTPSA.
        """
        client = self.authenticated()
        codes = client.mail(
            b"bob@example.org", [b"carol@example.org"], b"Subject: hi\n\nhello\n",
            hello=False,
        )
        self.assertEqual(codes, [250, 250, 354, 250])
        [(sender, receiver, _)] = self.store.deliveries
        self.assertEqual((sender, receiver), ("bob@example.org", "carol"))
        [stored] = self.store.messages("carol")
        self.assertIn(b"with ESMTPSA id", stored)
        self.assertIn(b"\nhello\n", stored)

    def test_addressCaseAndLocalhost(self):
        """
        The user's address matches without regard to case, and at
        localhost as well as the domain.
        """
        client = self.authenticated()
        self.assertEqual(client.codes(b"MAIL FROM:<BOB@Example.ORG>\r\n"), [250])
        client.command(b"RSET")
        self.assertEqual(client.codes(b"MAIL FROM:<bob@localhost>\r\n"), [250])

    def test_otherSenders(self):
        """
        Another user's address, another domain and the null sender get 553.
        """
        client = self.authenticated()
        for sender in (b"<carol@example.org>", b"<bob@elsewhere.example>", b"<>"):
            [(code, text)] = client.command(b"MAIL FROM:" + sender)
            self.assertEqual(code, 553, sender)
            self.assertIn(b"bob@example.org", text)
        self.assertEqual(self.store.deliveries, [])

    def test_noRelaying(self):
        """
        Recipients at other domains are refused (550), and unknown local
        users too: submission relays nothing.
        """
        client = self.authenticated()
        client.command(b"MAIL FROM:<bob@example.org>")
        self.assertEqual(client.codes(b"RCPT TO:<someone@elsewhere.example>\r\n"), [550])
        self.assertEqual(client.codes(b"RCPT TO:<nobody@example.org>\r\n"), [550])
        self.assertEqual(client.codes(b"RCPT TO:<carol@example.org>\r\n"), [250])

    def test_authParameterAccepted(self):
        """
        The RFC 4954 AUTH= parameter of MAIL is accepted.
        """
        client = self.authenticated()
        self.assertEqual(client.codes(b"MAIL FROM:<bob@example.org> AUTH=<>\r\n"), [250])

    def test_dataKeepsText(self):
        """
        The submitted text arrives whole, dot-stuffing undone.
        """
        client = self.authenticated()
        text = b"Subject: dots\n\n.leading dot\nend\n"
        client.send(
            b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n"
            + stuff(text)
            + b".\r\n"
        )
        [stored] = self.store.messages("carol")
        self.assertIn(b"\n.leading dot\nend\n", stored)


class HeaderFromTests(SenderTests):
    """
    The headers a reader sees name the user, as the envelope sender does.
    """

    def send(self, text):
        client = self.authenticated()
        codes = client.codes(
            b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n")
        self.assertEqual(codes, [250, 250, 354])
        return client.command(stuff(text) + b".")

    def test_ownFromAccepted(self):
        """
        From: with the user's own address (any display name, any case, at
        localhost too) and a matching Sender: are stored as written.
        """
        for header in (b"From: Bob Smith <bob@example.org>",
                       b"From: BOB@Example.Org\nSender: bob@localhost",
                       b"From: =?utf-8?q?B=C3=B6b?=\n <bob@example.org>"):
            [(code, _)] = self.send(header + b"\nSubject: hi\n\nhello\n")
            self.assertEqual(code, 250, header)
        self.assertEqual(len(self.store.messages("carol")), 3)

    def test_forgedFromRefused(self):
        """
        A From: or Sender: naming anyone else (another user, another domain,
        a second author, a folded line, a bare-CR smuggled line, no address
        at all) gets 550 naming the user's own address; nothing is stored.
        """
        for header in (b"From: The CEO <carol@example.org>",
                       b"From: bob@example.org\nSender: carol@example.org",
                       b"From: bob@elsewhere.example",
                       b"From: bob@example.org, carol@example.org",
                       b"From: Bob\n <carol@example.org>",
                       b"Subject: hello\rFrom: The CEO <ceo@x>\rReply-To: x@evil",
                       b"From: undisclosed:;"):
            [(code, text)] = self.send(header + b"\n\nhello\n")
            self.assertEqual(code, 550, header)
            self.assertIn(b"5.7.1", text)
            self.assertIn(b"bob@example.org", text)
        self.assertEqual(self.store.messages("carol"), [])

    def test_missingFromAdded(self):
        """
        A message without From: gets the user's own address.
        """
        [(code, _)] = self.send(b"Subject: hi\n\nhello\n")
        self.assertEqual(code, 250)
        [stored] = self.store.messages("carol")
        self.assertIn(b"\nFrom: bob@example.org\n", stored)

    def test_ingressKeepsFrom(self):
        """
        On ingress (no login) From: is the sender's business and is kept.
        """
        client = self.connect(submission=False)
        codes = client.mail(b"x@elsewhere.example", [b"carol@example.org"],
                            b"From: The CEO <ceo@elsewhere.example>\n\nhi\n")
        self.assertEqual(codes[-2:], [354, 250])
        [stored] = self.store.messages("carol")
        self.assertIn(b"From: The CEO <ceo@elsewhere.example>\n", stored)


class OptionsTests(SynchronousTestCase):
    """
    C{--submission} on the command line.
    """

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def assertUsageError(self, *argv):
        exc = self.assertRaises(usage.UsageError, self.parse, *argv)
        self.assertNotIn("\n", str(exc))
        return str(exc)

    def test_needsPasswords(self):
        """
        --submission without --passwords is a one-line usage error.
        """
        cert, key = makeCertificate(self.mktemp())
        self.assertIn(
            "--submission needs --passwords",
            self.assertUsageError(
                "--submission", "tcp:2587", "--smtp-tls-cert", cert, "--smtp-tls-key", key
            ),
        )

    def test_needsTLS(self):
        """
        A plain --submission endpoint without --smtp-tls-cert is refused;
        with it, or on an ssl: endpoint, it is accepted (and repeatable).
        """
        cert, key = makeCertificate(self.mktemp())
        passwords = os.path.abspath(self.mktemp())
        self.assertIn(
            "--smtp-tls-cert",
            self.assertUsageError("--passwords", passwords, "--submission", "tcp:2587"),
        )
        options = self.parse(
            "--passwords", passwords,
            "--submission", "tcp:2587", "--submission", "tcp:2588",
            "--smtp-tls-cert", cert, "--smtp-tls-key", key,
        )
        self.assertEqual(options["submission"], ["tcp:2587", "tcp:2588"])
        options = self.parse(
            "--passwords", passwords,
            "--submission", "ssl:2465:privateKey={}:certKey={}".format(key, cert),
        )
        self.assertEqual(len(options["submission"]), 1)

    def test_offByDefault(self):
        """
        Without --submission there is no submission listener.
        """
        self.assertEqual(self.parse()["submission"], [])


# -- end to end


class SubmissionServerProcess(ServerProcess):
    """
    A twistd server with a submission listener on another loopback port,
    chosen afresh at every start.
    """

    submissionPort = None

    def args(self, port):
        self.submissionPort = freePort()
        return ServerProcess.args(self, port) + [
            "--submission",
            "tcp:{}:interface=127.0.0.1".format(self.submissionPort),
        ]


class EndToEndTests(SynchronousTestCase):
    """
    C{smtplib} against a real C{twistd -n simplemail --passwords ...
    --submission ...}; what it delivers is read back with READM.
    """

    def setUp(self):
        self.cert, self.key = makeCertificate(os.path.abspath(self.mktemp()))
        self.spool = os.path.abspath(self.mktemp())
        self.server = SubmissionServerProcess(
            self.spool,
            extraArgs=[
                "--domain", DOMAIN,
                "--passwords", os.path.abspath(self.mktemp()),
                "--idle-timeout", "30",
                "--smtp-tls-cert", self.cert,
                "--smtp-tls-key", self.key,
            ],
        )
        self.addCleanup(self.server.close)
        self.server.start()
        with self.server.connect() as client:
            for userid in (b"bob", b"carol"):
                reply = client.command(b"ADDU " + userid + b" " + userid + b" pw")
                self.assertTrue(reply.startswith(b"+OK"), reply)

    def submission(self, tls=True):
        client = smtplib.SMTP(
            "127.0.0.1", self.server.submissionPort, local_hostname="client.example",
            timeout=WAIT,
        )
        self.addCleanup(client.close)
        client.ehlo()
        if tls:
            client.starttls(context=ssl.create_default_context(cafile=self.cert))
            client.ehlo()
        return client

    def read(self, userid):
        """
        The messages of C{userid}, read with READM over the line protocol
        after logging in.
        """
        with self.server.connect() as client:
            self.assertTrue(client.command(b"USER " + userid).startswith(b"+OK"))
            reply = client.command(b"PASS " + userid + b" pw")
            self.assertTrue(reply.startswith(b"+OK"), reply)
            return client.readAll()

    def test_sendAndReadBack(self):
        """
        A mail program's session: STARTTLS, AUTH LOGIN, a message from bob
        to carol, which carol then reads with READM.
        """
        client = self.submission()
        self.assertIn("PLAIN", client.esmtp_features["auth"])
        client.login("bob", "bob pw")
        refused = client.sendmail(
            "bob@example.org", ["carol@example.org"],
            b"From: bob@example.org\r\nSubject: by submission\r\n\r\nhello carol\r\n",
        )
        self.assertEqual(refused, {})
        client.quit()
        [text] = self.read(b"carol")
        self.assertIn(b"Subject: by submission", text)
        self.assertIn(b"hello carol", text)
        self.assertIn(b"with ESMTPSA id", text)

    def test_refusals(self):
        """
        Over TLS: MAIL before AUTH gets 530, a wrong password 535, another
        sender 553; in clear, AUTH gets 538 and MAIL 530.
        """
        clear = self.submission(tls=False)
        self.assertFalse(clear.has_extn("auth"))
        code, text = clear.docmd("AUTH", "PLAIN " + plain(b"bob", b"bob pw").decode())
        self.assertEqual((code, text), (538, b"Must issue a STARTTLS command first"))
        self.assertEqual(clear.mail("bob@example.org")[0], 530)
        client = self.submission()
        self.assertEqual(client.mail("bob@example.org")[0], 530)
        client.rset()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as caught:
            client.login("bob", "wrong")
        self.assertEqual(caught.exception.smtp_code, 535)
        client.login("bob", "bob pw")
        self.assertEqual(client.mail("carol@example.org")[0], 553)
        self.assertEqual(client.mail("bob@example.org")[0], 250)
        self.assertEqual(client.rcpt("someone@elsewhere.example")[0], 550)
        self.assertEqual(self.read(b"carol"), [])
