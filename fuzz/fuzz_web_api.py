"""
The web API (L{twisted_mail.doors.web.api}): JSON bodies, paths and query
strings, through the real L{Site} over a string transport, against the
memory store (alice has an HTML mail with attachments, bob a plain one).

The input: a flags byte (passwords on or off; the method; whether to send
C{X-Simplemail: 1}, HTTP Basic for alice, an C{Origin}), then the path and
query (bytes that cannot stand in a request line are %-escaped; under
C{/api/v1/} unless the path starts with C{/}), a NUL, and the body.

Properties: one complete HTTP answer; its code is one the contract
documents (200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 503), never
500; a JSON answer parses, an error is C{{"error": text}}; a listing's
summaries are printable one-line text; nothing is logged as a failure.
"""

import functools
import json

from fuzz import harness

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

with harness.instrumented():
    from twisted_mail.doors.web import makeWebFactory
    from twisted_mail.logins.portal import MailRealm
    from twisted_mail.stores import memory


HTML_MAIL = (
    b"From: Carol <carol@example.org>\nTo: alice@localhost\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nDate: Thu, 03 Dec 2026 10:00:00 +0000\n"
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
    b"--XX\nContent-Type: text/html; charset=utf-8\n\n<p>Hello <b>Alice</b></p>\n"
    b"--XX\nContent-Type: application/pdf\n"
    b"Content-Disposition: attachment; filename=\"report.pdf\"\n"
    b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--XX--\n"
)
PLAIN_MAIL = b"From: alice@localhost\nTo: bob@localhost\nSubject: hi\n\nhello bob\n"

METHODS = (b"GET", b"POST", b"DELETE", b"HEAD", b"PUT", b"OPTIONS", b"GET", b"POST")
CODES = frozenset([200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 503])

_failures = harness.FailureLog()


def _syncThread(f, *args):
    return defer.maybeDeferred(f, *args)


class _PasswordFile:
    def setPassword(self, userid, password):
        pass


def _escape(path):
    return b"".join(
        bytes([c]) if 0x21 <= c < 0x7F and c not in b"#" else b"%%%02X" % c
        for c in path)


def _makeStore(store=None):
    """
    A memory store (or C{store} emptied and filled again in place: the
    factories are built once) with alice's and bob's mail.
    """
    if store is None:
        store = memory.MemoryStore.__new__(memory.MemoryStore)
    memory.MemoryStore.__init__(store, maxMessageSize=64 * 1024,
                                clock=lambda: 1785000000)
    store.addUser("alice")
    store.addUser("bob")
    store.deliverMessage("carol@example.org", "alice", HTML_MAIL)
    store.deliverMessage("alice@localhost", "bob", PLAIN_MAIL)
    return store


def _makeFactory(passwords):
    store = _makeStore()
    portal = passwordFile = None
    if passwords:
        portal = Portal(MailRealm(), [InMemoryUsernamePasswordDatabaseDontUse(
            alice=b"wonderland", bob=b"builder")])
        passwordFile = _PasswordFile()
    factory = makeWebFactory(
        store, "localhost", portal=portal, passwordFile=passwordFile,
        maxMessageSize=64 * 1024, idleTimeout=60, maxConnections=20,
        reactor=task.Clock(), inThread=_syncThread)
    return factory, store


#: Built once (the API's OpenAPI document costs more than a request).
_FACTORIES = {}


def request(flags, target, body):
    """
    One request; the raw answer.
    """
    passwords = bool(flags & 1)
    if passwords not in _FACTORIES:
        _FACTORIES[passwords] = _makeFactory(passwords)
    factory, store = _FACTORIES[passwords]
    _makeStore(store)
    factory.doStart()
    try:
        method = METHODS[(flags >> 1) & 7]
        lines = [method + b" " + target + b" HTTP/1.1", b"Connection: close",
                 b"Host: 127.0.0.1:9080"]
        if flags & 16:
            lines.append(b"X-Simplemail: 1")
        if flags & 32:
            lines.append(b"Authorization: Basic YWxpY2U6d29uZGVybGFuZA==")
        if flags & 64:
            lines.append(b"Origin: http://evil.example")
        if body or method in (b"POST", b"PUT"):
            lines.append(b"Content-Type: application/json")
            lines.append(b"Content-Length: %d" % len(body))
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 9080), peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        answer = transport.value()
        protocol.connectionLost(None)
        return method, answer
    finally:
        factory.doStop()


def _parse(data, method):
    end = data.find(b"\r\n\r\n")
    assert end != -1, data[:300]
    head = data[:end].decode("latin-1").split("\r\n")
    code = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    rest = data[end + 4:]
    if method == b"HEAD":
        assert not rest, rest[:300]
        return code, headers, rest
    if "content-length" in headers:
        length = int(headers["content-length"])
        assert len(rest) >= length, (length, rest[:300])
        return code, headers, rest[:length]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            end = rest.find(b"\r\n")
            assert end != -1, "a chunked answer without its last chunk"
            size = int(rest[:end].split(b";")[0], 16)
            if size == 0:
                return code, headers, body
            body += rest[end + 2:end + 2 + size]
            rest = rest[end + 4 + size:]
    return code, headers, rest


def check(data):
    if not data:
        return
    flags = data[0]
    target, _, body = data[1:].partition(b"\0")
    if not target.startswith(b"/"):
        target = b"/api/v1/" + target
    target = _escape(target)
    if b"/events" in target.split(b"?")[0]:
        return  # a stream that stays open: not a JSON answer
    _failures.clear()
    method, answer = request(flags, target, body)
    _failures.assertNone()
    code, headers, content = _parse(answer, method)
    if not target.startswith(b"/api/"):
        # The page and its files, not the API: anything but a 500 (an
        # unknown method there is Twisted's 501).
        assert code < 500 or code == 501, (code, target)
        return
    assert code in CODES, (code, target, content[:300])
    ctype = headers.get("content-type", "")
    if method == b"HEAD" or code == 204 or not ctype.startswith("application/json"):
        return
    answer = json.loads(content.decode("utf-8"))
    if code >= 400:
        assert list(answer) == ["error"] and isinstance(answer["error"], str), answer
        return
    for summary in answer.get("messages", []) if isinstance(answer, dict) else []:
        for field in ("id", "from", "to", "subject", "date", "snippet"):
            assert harness.isOneLineText(summary[field]), (field, summary)


if __name__ == "__main__":
    # The same messages are summarized (parsed) in every run: once is
    # enough (the mime target fuzzes the parsing).
    memory.summarize = functools.lru_cache(maxsize=16)(memory.summarize)
    harness.main(check)
