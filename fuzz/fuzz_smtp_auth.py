"""
SMTP submission's C{AUTH} (L{twisted_mail.doors.smtp.submission} and the
protocol's C{ext_AUTH}/C{state_AUTH}): the SASL C{PLAIN} and C{LOGIN}
exchanges, pure and through the protocol on a connection that is TLS from
the start.

The input's first byte picks the part fuzzed:

  - even: the rest is a session (lines) sent to a submission server whose
    portal knows bob with password C{bob pw}.  Every reply is well-formed
    (C{NNN text} lines, a multi-line reply C{NNN-} then C{NNN }, one code,
    printable), nothing is logged as a failure, every C{AUTH} exchange
    ends with one of its codes, the server is never left paused, and the
    connection is authenticated exactly when the portal said yes;
  - odd: the rest is a SASL response, decoded and handed to each
    mechanism: C{decodeResponse} takes back what base64 gives, C{PLAIN}
    gives a user name and password only for C{authzid NUL authcid NUL
    password} with the authorization identity empty or the user's own,
    C{LOGIN} asks for a password after a non-empty user name.
"""

import base64
import binascii
import re

from fuzz import harness

from twisted.cred import error as credError
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

with harness.instrumented():
    from twisted_mail.doors.smtp import makeSMTPFactory
    from twisted_mail.doors.smtp import submission
    from twisted_mail.logins.portal import MailRealm
    from twisted_mail.stores.memory import MemoryStore

_failures = harness.FailureLog()


@implementer(ISSLTransport)
class _TLSTransport(StringTransport):
    def startTLS(self, contextFactory, normal=True):
        pass


@implementer(ICredentialsChecker)
class _Checker:
    """
    bob's password is C{bob pw}; answers at once.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self):
        self.granted = []

    def requestAvatarId(self, credentials):
        if credentials.username == b"bob" and credentials.password == b"bob pw":
            self.granted.append(credentials.username)
            return defer.succeed(b"bob")
        return defer.fail(credError.UnauthorizedLogin())


_REPLY = re.compile(rb"([2-5][0-9][0-9])([ -])([^\r\n]*)\Z")
_AUTH_ENDS = {b"235", b"535", b"501", b"504", b"503", b"538", b"454", b"421", b"500"}


def checkReplies(output):
    """
    Split the output into replies, each checked well-formed.

    @return: a L{list} of C{(code, [text lines])}.
    """
    assert output.endswith(b"\r\n") or not output, output[-80:]
    replies = []
    current = None
    for line in output.split(b"\r\n")[:-1]:
        match = _REPLY.match(line)
        assert match, line
        code, sep, text = match.groups()
        assert harness.isOneLineText(text.decode("latin-1")), line
        if current is None:
            current = (code, [])
        assert current[0] == code, (current, line)
        current[1].append(text)
        if sep == b" ":
            replies.append(current)
            current = None
    assert current is None, "a multi-line reply without its last line"
    return replies


def finish(proto, transport, clock, failures):
    """
    End a session as the client's going (or the idle timeout) ends it, and
    read its replies: each well-formed (L{checkReplies}), no failure
    logged, no "internal error".
    """
    if not transport.disconnecting:
        clock.advance(61)
    proto.connectionLost(None)
    failures.assertNone()
    output = transport.value()
    assert b"internal error" not in output, output
    return checkReplies(output)


def checkSession(stream):
    _failures.clear()
    store = MemoryStore(domain="example.org", clock=lambda: 1785000000)
    store.addUser("bob")
    store.addUser("carol")
    checker = _Checker()
    clock = Clock()
    factory = makeSMTPFactory(
        store, "example.org", 4000, 60, reactor=clock,
        portal=Portal(MailRealm(), [checker]), submission=True,
        tlsContextFactory=object())
    proto = factory.buildProtocol(None)
    transport = _TLSTransport()
    proto.makeConnection(transport)
    harness.feed(proto, transport, stream)
    assert not proto._paused, "the server is waiting for nothing"
    authenticated = proto.authenticated
    user = proto.authenticatedUser
    replies = finish(proto, transport, clock, _failures)
    assert replies[0][0] == b"220", replies[0]
    assert bool(authenticated) == bool(checker.granted), (authenticated, checker.granted)
    assert not authenticated or user == "bob", user
    assert len(checker.granted) <= 1, checker.granted
    assert sum(1 for code, _ in replies if code == b"235") == len(checker.granted)


def checkExchange(response):
    try:
        decoded = submission.decodeResponse(response)
    except submission.SASLError as e:
        assert e.code == 501
        try:
            base64.b64decode(response.strip(), validate=True)
        except (binascii.Error, ValueError):
            pass
        else:
            raise AssertionError("refused base64 " + repr(response))
        decoded = response
    else:
        if response.strip() != b"=":
            assert base64.b64decode(response.strip(), validate=True) == decoded
    assert submission.decodeResponse(submission.encodeChallenge(decoded) or b"=") == decoded
    try:
        result = submission.startExchange(b"plain").respond(decoded)
    except submission.SASLError as e:
        assert e.code in (501, 535), e.code
        parts = decoded.split(b"\0")
        assert (len(parts) != 3 or not parts[1]
                or (parts[0] and parts[0].lower() != parts[1].lower())), decoded
    else:
        authzid, authcid, password = decoded.split(b"\0")
        assert result == (authcid, password) and authcid, result
        assert not authzid or authzid.lower() == authcid.lower()
    exchange = submission.startExchange(b"LOGIN")
    assert exchange.challenge == b"Username:"
    try:
        assert exchange.respond(decoded) == b"Password:"
    except submission.SASLError as e:
        assert e.code == 501 and not decoded
    else:
        assert exchange.respond(b"pw") == (decoded, b"pw")


def check(data):
    if not data:
        return
    if data[0] % 2:
        checkExchange(data[1:])
    else:
        checkSession(data[1:])


if __name__ == "__main__":
    harness.main(check)
