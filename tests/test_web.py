"""
Tests for the web inbox and JSON API (twisted_mail/doors/web/): every endpoint
and status of ACCESS.md's table, auth and CSRF, hostile input, through the
real site over in-memory connections against L{MemoryStore}.
"""

import json

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail import errors
from twisted_mail.logins.portal import MailRealm
from twisted_mail.stores.memory import MemoryStore
from twisted_mail.doors.web import makeWebFactory
from twisted_mail.doors.web.policy import CSP, FRAME_CSP

from tests.webclient import WebClient, parseResponse

HTML_MAIL = (
    b"From: Carol <carol@example.org>\n"
    b"To: alice@localhost\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n"
    b"Date: Thu, 03 Dec 2026 10:00:00 +0000\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=XX\n"
    b"\n"
    b"--XX\n"
    b"Content-Type: multipart/alternative; boundary=YY\n"
    b"\n"
    b"--YY\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"\n"
    b"Hello Alice\n"
    b"--YY\n"
    b"Content-Type: text/html; charset=utf-8\n"
    b"\n"
    b"<p>Hello <b>Alice</b><script>alert(1)</script></p>\n"
    b"--YY--\n"
    b"--XX\n"
    b"Content-Type: application/pdf\n"
    b"Content-Disposition: attachment; filename=\"report.pdf\"\n"
    b"Content-Transfer-Encoding: base64\n"
    b"\n"
    b"JVBERi0xLjQK\n"
    b"--XX\n"
    b"Content-Type: text/html\n"
    b"Content-Disposition: attachment; filename=\"../../evil<script>.html\"\n"
    b"\n"
    b"<script>alert(2)</script>\n"
    b"--XX--\n"
)


def syncThread(f, *args):
    return defer.maybeDeferred(f, *args)


class FakePasswordFile:
    def __init__(self):
        self.passwords = {}

    def setPassword(self, userid, password):
        self.passwords[userid] = password


class WebMixin:
    passwords = False
    maxMessageSize = 256 * 1024

    def setUp(self):
        self.clock = task.Clock()
        self.store = MemoryStore(maxMessageSize=self.maxMessageSize)
        for user in ("alice", "bob"):
            self.successResultOf(self.store.addUser(user))
        portal = passwordFile = None
        if self.passwords:
            checker = InMemoryUsernamePasswordDatabaseDontUse(
                alice=b"wonderland", bob=b"builder")
            portal = Portal(MailRealm(), [checker])
            passwordFile = self.passwordFile = FakePasswordFile()
        self.factory = makeWebFactory(
            self.store, "localhost", portal=portal, passwordFile=passwordFile,
            maxMessageSize=self.maxMessageSize, idleTimeout=60, maxConnections=20,
            reactor=self.clock, inThread=syncThread)
        self.factory.doStart()
        self.addCleanup(self.factory.doStop)
        self.client = WebClient(self.factory)

    def deliver(self, text, user="alice"):
        self.successResultOf(self.store.deliverMessage("x@example.org", user, text))
        listing = self.successResultOf(self.successResultOf(
            self.store.openMailbox(user)).listMessages(0, 1, newestFirst=True))
        return listing.messages[0].id

    def send(self, sender, receiver, body):
        self.successResultOf(self.store.deliver(sender, receiver, body))

    def assertError(self, response, code):
        self.assertEqual((response.code, response.header("content-type")),
                         (code, "application/json"), response)
        self.assertIsInstance(response.json()["error"], str)


class OpenAPITests(WebMixin, SynchronousTestCase):
    """
    The API without passwords: open, as the line protocol is.
    """

    def test_users(self):
        """GET /users lists the users sorted."""
        self.successResultOf(self.store.addUser("aaron"))
        response = self.client.request("GET", "/api/v1/users")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json(), {"users": ["aaron", "alice", "bob"]})

    def test_addUser(self):
        """POST /users creates a user (201); the same again is 409."""
        response = self.client.request("POST", "/api/v1/users", json_={"user": "carol"})
        self.assertEqual((response.code, response.json()), (201, {"user": "carol"}))
        self.assertEqual(self.successResultOf(self.store.listUsers()),
                         ["alice", "bob", "carol"])
        self.assertError(
            self.client.request("POST", "/api/v1/users", json_={"user": "carol"}), 409)

    def test_addUserBadInput(self):
        """Malformed JSON, wrong types, bad ids and invalid UTF-8 are 400s."""
        for body in [b"{", b"[]", b'{"user": 5}', b'{"user": "../x"}', b'{"user": ""}',
                     b'{"user": "\xff\xfe"}', b'{"user": "x", "password": "p"}',
                     b'{"user": "\\ud800"}', b"[" * 100000, b""]:
            response = self.client.request("POST", "/api/v1/users", body=body)
            self.assertError(response, 400)
        self.assertEqual(self.successResultOf(self.store.listUsers()), ["alice", "bob"])

    def test_listNewestFirst(self):
        """GET messages lists summaries newest first, with total and start."""
        for n in range(5):
            self.send("bob", "alice", "message {}\n".format(n).encode())
        response = self.client.request("GET", "/api/v1/users/alice/messages?start=1&limit=2")
        self.assertEqual(response.code, 200)
        page = response.json()
        self.assertEqual((page["user"], page["total"], page["start"]), ("alice", 5, 1))
        self.assertEqual([m["snippet"] for m in page["messages"]],
                         ["message 3", "message 2"])
        self.assertEqual(sorted(page["messages"][0]),
                         ["attachments", "date", "flags", "folder", "from", "id", "size",
                          "snippet", "subject", "to"])
        self.assertEqual((page["messages"][0]["folder"], page["messages"][0]["flags"]),
                         ("INBOX", []))
        self.assertEqual(page["messages"][0]["from"], "bob@localhost")

    def test_listBadParameters(self):
        """Bad start or limit values are 400s."""
        for query in ["start=-1", "limit=0", "limit=abc", "limit=100000", "start=1e3"]:
            self.assertError(self.client.request(
                "GET", "/api/v1/users/alice/messages?" + query), 400)

    def test_unknownUserAndPathTricks(self):
        """Unknown users, path tricks and ids that cannot be are 404s."""
        for path in ["/api/v1/users/carol/messages", "/api/v1/users/../messages",
                     "/api/v1/users/alice%2F..%2Fbob/messages",
                     "/api/v1/users/%2e%2e/messages", "/api/v1/users/alice/messages/a.b",
                     "/api/v1/users/alice/messages/%00", "/api/v1/users/alice/messages/m1",
                     "/api/v1/users/al%FFice/messages", "/api/v2/users", "/api/v1/",
                     "/api/v1/users/alice/messages/m1/parts/1/x", "/static/../tap.py",
                     "/static/app.js/", "/nothing"]:
            self.assertError(self.client.request("GET", path), 404)

    def test_methodNotAllowed(self):
        """A method a path does not take is 405 with Allow."""
        response = self.client.request("PUT", "/api/v1/users", json_={})
        self.assertError(response, 405)
        self.assertEqual(response.header("allow"), "GET, POST, HEAD")

    def test_message(self):
        """GET a message gives its summary, headers, text, HTML and parts."""
        msgid = self.deliver(HTML_MAIL)
        response = self.client.request("GET", "/api/v1/users/alice/messages/" + msgid)
        self.assertEqual(response.code, 200)
        m = response.json()
        self.assertEqual((m["id"], m["from"], m["subject"], m["date"]),
                         (msgid, "Carol <carol@example.org>", "Grüße", "2026-12-03T10:00:00Z"))
        self.assertEqual(m["text"], "Hello Alice")
        self.assertIn("<b>Alice</b>", m["html"])
        self.assertEqual(m["parts"], [
            {"part": 1, "filename": "report.pdf", "contentType": "application/pdf",
             "size": 9},
            {"part": 2, "filename": "evil<script>.html", "contentType": "text/html",
             "size": 25}])
        self.assertEqual(m["attachments"], 2)
        self.assertIn(["Subject", "Grüße"], m["headers"])
        self.assertEqual(m["size"], len(HTML_MAIL) + HTML_MAIL.count(b"\n"))

    def test_raw(self):
        """GET raw gives the stored text as message/rfc822."""
        msgid = self.deliver(HTML_MAIL)
        response = self.client.request("GET", "/api/v1/users/alice/messages/{}/raw".format(msgid))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("content-type"), "message/rfc822")
        self.assertEqual(response.body, self.store.messages("alice")[0])
        self.assertIn("sandbox", response.header("content-security-policy"))

    def test_rawLarge(self):
        """A large raw message is written whole, in pieces."""
        big = b"Subject: big\n\n" + b"0123456789abcde\n" * 3000
        msgid = self.deliver(big)
        response = self.client.request("GET", "/api/v1/users/alice/messages/{}/raw".format(msgid))
        self.assertEqual((response.code, response.body), (200, big))

    def test_parts(self):
        """GET a part gives its decoded bytes as a download; HTML never as HTML."""
        msgid = self.deliver(HTML_MAIL)
        base = "/api/v1/users/alice/messages/{}/parts/".format(msgid)
        pdf = self.client.request("GET", base + "1")
        self.assertEqual((pdf.code, pdf.body, pdf.header("content-type")),
                         (200, b"%PDF-1.4\n", "application/pdf"))
        self.assertTrue(pdf.header("content-disposition").startswith(
            'attachment; filename="report.pdf"'))
        html = self.client.request("GET", base + "2")
        self.assertEqual(html.header("content-type"), "application/octet-stream")
        self.assertEqual(html.header("content-disposition"),
                         'attachment; filename="evil_script_.html"; '
                         "filename*=UTF-8''evil%3Cscript%3E.html")
        self.assertIn("sandbox", html.header("content-security-policy"))
        for part in ["0", "3", "x", "-1", "99999999999"]:
            self.assertError(self.client.request("GET", base + part), 404)

    def test_html(self):
        """The HTML part comes with the sandbox CSP for the frame; 404 without one."""
        msgid = self.deliver(HTML_MAIL)
        response = self.client.request(
            "GET", "/api/v1/users/alice/messages/{}/html".format(msgid))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(response.header("content-security-policy"), FRAME_CSP.decode())
        self.assertIn(b"<b>Alice</b>", response.body)
        plain = self.deliver(b"Subject: plain\n\nno html\n")
        self.assertError(self.client.request(
            "GET", "/api/v1/users/alice/messages/{}/html".format(plain)), 404)

    def test_delete(self):
        """DELETE answers 204 once deleted; the message is gone for every door."""
        keep = self.deliver(b"Subject: keep\n\nkeep\n")
        gone = self.deliver(b"Subject: gone\n\ngone\n")
        response = self.client.request("DELETE", "/api/v1/users/alice/messages/" + gone)
        self.assertEqual((response.code, response.body), (204, b""))
        self.assertEqual(self.store.messages("alice"), [b"Subject: keep\n\nkeep\n"])
        self.assertError(self.client.request("GET", "/api/v1/users/alice/messages/" + gone), 404)
        self.assertError(self.client.request("DELETE", "/api/v1/users/alice/messages/" + gone), 404)
        self.assertEqual(self.client.request(
            "GET", "/api/v1/users/alice/messages/" + keep).code, 200)

    def test_send(self):
        """POST messages stores a message (201 with its id) the server builds."""
        response = self.client.request("POST", "/api/v1/users/alice/messages", json_={
            "from": "bob", "subject": "Grüße\r\nBcc: eve", "text": "Hello,\nFrom here.\n"})
        self.assertEqual(response.code, 201, response)
        msgid = response.json()["id"]
        m = self.client.request("GET", "/api/v1/users/alice/messages/" + msgid).json()
        self.assertEqual((m["from"], m["to"], m["subject"], m["text"]),
                         ("bob@localhost", "alice@localhost", "Grüße Bcc: eve",
                          "Hello,\nFrom here.\n"))
        names = [name.lower() for name, _ in m["headers"]]
        self.assertNotIn("bcc", names)
        self.assertEqual(names[:4], ["from", "to", "date", "message-id"])

    def test_sendFindsItsOwnId(self):
        """The id answered is the new message's even when others arrive meanwhile."""
        original = self.store.deliverMessage

        def deliverAndMore(sender, receiver, message):
            d = original(sender, receiver, message)
            original("x@y", receiver, b"Subject: later\n\nlater\n")
            return d

        self.store.deliverMessage = deliverAndMore
        response = self.client.request("POST", "/api/v1/users/alice/messages",
                                       json_={"from": "bob", "text": "mine"})
        m = self.client.request(
            "GET", "/api/v1/users/alice/messages/" + response.json()["id"]).json()
        self.assertEqual(m["text"], "mine\n")

    def test_sendBadInput(self):
        """Unknown users, missing fields and wrong types are 4xx; nothing is stored."""
        cases = [
            ("carol", {"from": "bob", "text": "x"}, 404),
            ("alice", {"from": "carol", "text": "x"}, 404),
            ("alice", {"from": "bob"}, 400),
            ("alice", {"text": "x"}, 400),
            ("alice", {"from": "bob", "text": 5}, 400),
            ("alice", {"from": "bob", "text": "x", "subject": ["x"]}, 400),
            ("alice", {"from": "../bob", "text": "x"}, 400),
        ]
        for user, body, code in cases:
            self.assertError(self.client.request(
                "POST", "/api/v1/users/{}/messages".format(user), json_=body), code)
        self.assertEqual(self.store.messages("alice"), [])

    def test_sendTooLarge(self):
        """A message over the size limit is 413 and nothing is stored."""
        response = self.client.request("POST", "/api/v1/users/alice/messages", json_={
            "from": "bob", "text": "x" * (self.maxMessageSize - 10)})
        self.assertError(response, 413)
        self.assertEqual(self.store.messages("alice"), [])

    def test_bodyTooLarge(self):
        """A request body announced beyond the limit is refused with 413 at once."""
        transport = self.client.raw(
            b"POST /api/v1/users/alice/messages HTTP/1.1\r\nHost: localhost\r\n"
            b"Expect: 100-continue\r\nContent-Length: 999999999\r\n\r\n" + b"x" * 1000)
        response, rest = parseResponse(transport.value())
        self.assertError(response, 413)
        self.assertEqual(rest, b"")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.store.messages("alice"), [])

    def test_chunkedBodyTooLarge(self):
        """A chunked request body that grows beyond the limit is refused with 413."""
        chunk = b"x" * 60000
        data = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8))
        transport = self.client.raw(
            b"POST /api/v1/users HTTP/1.1\r\nHost: localhost\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + data)
        response, _ = parseResponse(transport.value())
        self.assertError(response, 413)

    def test_temporaryFailure(self):
        """A store that fails for now gives 503, and a send stores nothing."""
        self.store.failNext = errors.TemporaryFailure("disk full")
        self.assertError(self.client.request("GET", "/api/v1/users/alice/messages"), 503)
        self.store.failNext = errors.TemporaryFailure("disk full")
        self.assertError(self.client.request("POST", "/api/v1/users/alice/messages",
                                             json_={"from": "bob", "text": "x"}), 503)
        self.assertEqual(self.store.messages("alice"), [])

    def test_unexpectedError(self):
        """An unexpected failure is a 500 with a plain JSON error, logged, no traceback."""
        self.store.failNext = RuntimeError("/secret/path")
        response = self.client.request("GET", "/api/v1/users/alice/messages")
        self.assertEqual((response.code, response.json()), (500, {"error": "internal error"}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_events(self):
        """The event stream sends each new message's summary; a gone client unsubscribes."""
        protocol, transport = self.client.connect()
        protocol.dataReceived(b"GET /api/v1/users/alice/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.send("bob", "alice", b"first\n")
        self.send("bob", "bob", b"not for alice\n")
        self.clock.advance(15)
        response, _ = parseResponse(transport.value())
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("content-type"), "text/event-stream; charset=utf-8")
        events = [block for block in response.body.decode().split("\n\n") if block]
        self.assertEqual(events[0], "retry: 2000\n: connected")
        kind, ident, data = events[1].split("\n")
        self.assertEqual(kind, "event: message")
        summary = json.loads(data[len("data: "):])
        self.assertEqual((summary["snippet"], "id: " + summary["id"]), ("first", ident))
        self.assertEqual(events[2:], [": keep-alive"])
        self.assertEqual(self.store._watchers.count("alice"), 1)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.store._watchers.count("alice"), 0)
        self.clock.advance(60)

    def test_clientGoneMeanwhile(self):
        """A client gone before the store answers costs nothing: no error, no subscription."""
        msgid = self.deliver(HTML_MAIL)
        pending = []

        def later(result):
            d = defer.Deferred()
            pending.append((d, result))
            return d

        fetch = self.store.openMailbox

        def openMailbox(user):
            return fetch(user).addCallback(later)

        self.store.openMailbox = openMailbox
        hasUser = self.store.hasUser
        self.store.hasUser = lambda user: hasUser(user).addCallback(later)
        for path in ["/messages/{}/raw", "/messages/{}/html", "/messages/{}",
                     "/messages/{}/parts/1", "/messages", "/events"]:
            protocol, transport = self.client.connect()
            protocol.dataReceived(
                "GET /api/v1/users/alice{} HTTP/1.1\r\nHost: localhost\r\n\r\n".format(
                    path.format(msgid)).encode())
            protocol.connectionLost(Failure(ConnectionDone()))
            for d, result in pending:
                d.callback(result)
            del pending[:]
            self.assertEqual(transport.value(), b"", path)
        self.assertEqual(self.store._watchers.count("alice"), 0)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_eventsHead(self):
        """HEAD on the event stream answers its headers and ends."""
        response = self.client.request("HEAD", "/api/v1/users/alice/events")
        self.assertEqual((response.code, response.body), (200, b""))
        self.assertEqual(self.store._watchers.count("alice"), 0)

    def test_eventsUnknownUser(self):
        """The event stream of an unknown user is 404."""
        self.assertError(self.client.request("GET", "/api/v1/users/carol/events"), 404)

    def test_hostileMessages(self):
        """A thousand parts and a broken MIME structure still read as JSON, never a 500."""
        many = [b"Content-Type: multipart/mixed; boundary=b\n\n"]
        for n in range(1200):
            many.append(b"--b\nContent-Type: application/octet-stream\n"
                        b"Content-Disposition: attachment; filename=f%d\n\nx\n" % n)
        many.append(b"--b--\n")
        broken = (b"Content-Type: multipart/mixed; boundary=\"\n"
                  b"Content-Transfer-Encoding: base64\nSubject: =?x?q?broken\n\n--\n\xff\xfe\n")
        nested = b"Content-Type: multipart/mixed; boundary=a\n\n" + b"--a\nContent-Type: multipart/mixed; boundary=a\n\n" * 3000
        for text in [b"".join(many), broken, nested, b"\n", b"\xff\x00\n"]:
            msgid = self.deliver(text)
            response = self.client.request("GET", "/api/v1/users/alice/messages/" + msgid)
            self.assertEqual(response.code, 200)
            self.assertIsInstance(response.json()["parts"], list)
        self.assertEqual(self.client.request("GET", "/api/v1/users/alice/messages").code, 200)

    def test_securityHeaders(self):
        """Every answer carries the CSP and nosniff: page, files, API, errors."""
        for method, path in [("GET", "/"), ("GET", "/static/app.js"), ("GET", "/static/app.css"),
                             ("GET", "/api/v1/users"), ("GET", "/nope"),
                             ("GET", "/api/v1/users/carol/messages"),
                             ("GET", "/api/v1/openapi.json"), ("DELETE", "/api/v1/users")]:
            response = self.client.request(method, path)
            self.assertEqual(response.header("x-content-type-options"), "nosniff", path)
            self.assertIn("frame-ancestors 'none'",
                          response.header("content-security-policy"), path)
            self.assertNotIn("unsafe-inline", response.header("content-security-policy"))
        self.assertEqual(self.client.request("GET", "/").header("content-security-policy"),
                         CSP.decode())

    def test_page(self):
        """The page and its files are served from the package, with no inline script."""
        page = self.client.request("GET", "/")
        self.assertEqual((page.code, page.header("content-type")),
                         (200, "text/html; charset=utf-8"))
        self.assertIn(b'<script src="/static/app.js" defer></script>', page.body)
        self.assertNotIn(b"<script>", page.body)
        self.assertNotIn(b"http", page.body.replace(b"http-equiv", b""))
        script = self.client.request("GET", "/static/app.js")
        self.assertEqual(script.header("content-type"), "text/javascript; charset=utf-8")
        self.assertNotIn(b"innerHTML", script.body)

    def test_crossSite(self):
        """A state-changing request from another site is 403, with passwords off too."""
        for headers in [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}]:
            response = self.client.request("POST", "/api/v1/users/alice/messages",
                                           json_={"from": "bob", "text": "x"}, headers=headers)
            self.assertError(response, 403)
        same = self.client.request("POST", "/api/v1/users/alice/messages",
                                   json_={"from": "bob", "text": "x"},
                                   headers={"Origin": "http://127.0.0.1:9080"})
        self.assertEqual(same.code, 201)

    def test_hostNames(self):
        """On loopback, a request for another host name (DNS rebinding) is 403."""
        for host in ["evil.example", "evil.example:9080", "127.0.0.1.evil.example"]:
            self.assertError(self.client.request("GET", "/api/v1/users",
                                                 headers={"Host": host}), 403)
        for host in ["localhost:9080", "127.0.0.1", "[::1]:9080", "app.localhost", "LOCALHOST"]:
            self.assertEqual(self.client.request("GET", "/api/v1/users",
                                                 headers={"Host": host}).code, 200, host)

    def test_connectionLimit(self):
        """Connections beyond --max-connections get 503 and are closed."""
        factory = makeWebFactory(self.store, "localhost", maxConnections=1,
                                 reactor=self.clock, inThread=syncThread)
        client = WebClient(factory)
        client.connect()
        transport = client.raw(b"GET /api/v1/users HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response, _ = parseResponse(transport.value())
        self.assertError(response, 503)

    def test_idleTimeout(self):
        """A connection that sends nothing is closed after the idle timeout."""
        _, transport = self.client.connect()
        self.clock.advance(61)
        self.assertTrue(transport.disconnecting)

    def test_session(self):
        """GET /session says passwords are off."""
        self.assertEqual(self.client.request("GET", "/api/v1/session").json(),
                         {"user": None, "passwords": False})
        self.assertError(self.client.request(
            "POST", "/api/v1/login", json_={"user": "alice", "password": "x"}), 400)

    def test_openAPI(self):
        """The OpenAPI document describes every path of the table."""
        response = self.client.request("GET", "/api/v1/openapi.json")
        document = response.json()
        self.assertEqual(document["openapi"], "3.0.3")
        self.assertEqual(sorted(document["paths"]), [
            "/login", "/logout", "/session", "/users", "/users/{user}/events",
            "/users/{user}/folders", "/users/{user}/folders/{name}",
            "/users/{user}/messages", "/users/{user}/messages/{id}",
            "/users/{user}/messages/{id}/html", "/users/{user}/messages/{id}/parts/{part}",
            "/users/{user}/messages/{id}/raw"])


class PasswordAPITests(WebMixin, SynchronousTestCase):
    """
    The API with passwords: sessions, Basic, own mailbox only, CSRF header.
    """

    passwords = True

    def login(self, user="alice", password="wonderland"):
        return self.client.request("POST", "/api/v1/login",
                                   json_={"user": user, "password": password})

    def test_loginNeeded(self):
        """Without credentials every call but login is 401; programs get a Basic challenge."""
        for method, path in [("GET", "/api/v1/users"), ("GET", "/api/v1/users/alice/messages"),
                             ("POST", "/api/v1/users"), ("GET", "/api/v1/users/alice/events")]:
            response = self.client.request(method, path, csrf=False)
            self.assertError(response, 401)
            self.assertEqual(response.header("www-authenticate"),
                             'Basic realm="simplemail", charset="UTF-8"')
        page = self.client.request("GET", "/api/v1/users")
        self.assertError(page, 401)
        self.assertIsNone(page.header("www-authenticate"))

    def test_loginFailuresAlike(self):
        """A wrong password and an unknown user get the same answer."""
        wrong = self.login(password="nope")
        unknown = self.login(user="mallory", password="nope")
        invalid = self.login(user="../x", password="nope")
        self.assertError(wrong, 401)
        self.assertEqual((wrong.body, wrong.headers.get("set-cookie")),
                         (unknown.body, unknown.headers.get("set-cookie")))
        self.assertEqual(wrong.body, invalid.body)
        self.assertEqual(self.client.cookies, {})

    def test_login(self):
        """Login sets an HttpOnly SameSite=Strict cookie that opens one's own mailbox."""
        self.send("bob", "alice", b"hi\n")
        response = self.login()
        self.assertEqual((response.code, response.json()), (200, {"user": "alice"}))
        cookie = response.header("set-cookie")
        self.assertIn("HttpOnly", cookie)
        self.assertIn("samesite=strict", cookie.lower())
        self.assertIn("Path=/", cookie)
        listing = self.client.request("GET", "/api/v1/users/alice/messages")
        self.assertEqual((listing.code, listing.json()["total"]), (200, 1))
        self.assertEqual(self.client.request("GET", "/api/v1/session").json(),
                         {"user": "alice", "passwords": True})

    def test_othersMailbox(self):
        """A logged-in user gets 403 on another user's mailbox."""
        self.send("alice", "bob", b"private\n")
        self.login()
        bobs = self.successResultOf(self.successResultOf(
            self.store.openMailbox("bob")).listMessages()).messages[0].id
        for method, path in [("GET", "/api/v1/users/bob/messages"),
                             ("GET", "/api/v1/users/bob/messages/" + bobs),
                             ("GET", "/api/v1/users/bob/messages/{}/raw".format(bobs)),
                             ("DELETE", "/api/v1/users/bob/messages/" + bobs),
                             ("GET", "/api/v1/users/bob/events")]:
            self.assertError(self.client.request(method, path), 403)
        self.assertEqual(len(self.store.messages("bob")), 1)

    def test_csrfHeader(self):
        """A state-changing call with the cookie but without X-Simplemail: 1 is 403."""
        msgid = self.deliver(b"Subject: x\n\nx\n")
        self.login()
        self.assertError(self.client.request(
            "DELETE", "/api/v1/users/alice/messages/" + msgid, csrf=False), 403)
        self.assertError(self.client.request(
            "POST", "/api/v1/users/bob/messages", json_={"text": "x"}, csrf=False), 403)
        self.assertError(self.client.request("POST", "/api/v1/logout", csrf=False), 403)
        self.assertEqual(len(self.store.messages("alice")), 1)
        self.assertEqual(self.client.request(
            "DELETE", "/api/v1/users/alice/messages/" + msgid).code, 204)

    def test_basic(self):
        """HTTP Basic credentials work without the header; bad ones are 401."""
        response = self.client.request("POST", "/api/v1/users/bob/messages", csrf=False,
                                       json_={"text": "by basic"}, auth=("alice", "wonderland"))
        self.assertEqual(response.code, 201)
        self.assertEqual(self.store.messages("bob")[0].splitlines()[0], b"From: alice@localhost")
        self.assertError(self.client.request("GET", "/api/v1/users", csrf=False,
                                             auth=("alice", "wrong")), 401)
        self.assertError(self.client.request(
            "GET", "/api/v1/users", csrf=False,
            headers={"Authorization": "Basic !!!"}), 401)

    def test_sendOnlyAsYourself(self):
        """Sending as someone else is 403."""
        self.login()
        self.assertError(self.client.request("POST", "/api/v1/users/alice/messages",
                                             json_={"from": "bob", "text": "x"}), 403)
        self.assertEqual(self.store.messages("alice"), [])

    def test_logout(self):
        """After logout the cookie opens nothing."""
        self.login()
        token = dict(self.client.cookies)
        self.assertEqual(self.client.request("POST", "/api/v1/logout").code, 204)
        self.client.cookies = token
        self.assertError(self.client.request("GET", "/api/v1/users"), 401)

    def test_sessionExpires(self):
        """A session unused for long ends."""
        self.login()
        self.clock.advance(7 * 3600)
        self.assertEqual(self.client.request("GET", "/api/v1/users").code, 200)
        self.clock.advance(8 * 3600 + 1)
        self.assertError(self.client.request("GET", "/api/v1/users"), 401)

    def test_addUserWithPassword(self):
        """A logged-in user may add a user with a password; without one it is 400."""
        self.login()
        self.assertError(self.client.request("POST", "/api/v1/users",
                                             json_={"user": "carol"}), 400)
        response = self.client.request("POST", "/api/v1/users",
                                       json_={"user": "carol", "password": "pw"})
        self.assertEqual(response.code, 201)
        self.assertEqual(self.passwordFile.passwords, {"carol": "pw"})


class ReverseProxyTests(WebMixin, SynchronousTestCase):
    """
    Behind nginx (docs/web.rst): the page is served from
    https://mail.example.org (--web-origin), the server listens on
    127.0.0.1:9080 with --domain example.org.
    """

    def setUp(self):
        WebMixin.setUp(self)
        self.factory = makeWebFactory(
            self.store, "example.org", maxMessageSize=self.maxMessageSize,
            idleTimeout=60, maxConnections=20, reactor=self.clock,
            inThread=syncThread, origins=["https://mail.example.org/"])
        self.client = WebClient(self.factory)

    def postAndDelete(self, headers):
        sent = self.client.request("POST", "/api/v1/users/alice/messages",
                                   json_={"from": "bob", "text": "x"}, headers=headers)
        self.assertEqual(sent.code, 201, sent)
        deleted = self.client.request(
            "DELETE", "/api/v1/users/alice/messages/" + sent.json()["id"], headers=headers)
        self.assertEqual(deleted.code, 204, deleted)

    def test_nginxDefaultHost(self):
        """
        POST and DELETE work with what nginx sends by default: Host the
        proxy_pass upstream (127.0.0.1:9080), Origin the public https
        origin.
        """
        self.postAndDelete({"Host": "127.0.0.1:9080",
                            "Origin": "https://mail.example.org",
                            "Sec-Fetch-Site": "same-origin"})

    def test_nginxPublicHost(self):
        """
        POST and DELETE work when the proxy passes the public name as Host
        (proxy_set_header Host $host), and with --domain's name.
        """
        self.postAndDelete({"Host": "mail.example.org",
                            "Origin": "https://mail.example.org"})
        self.postAndDelete({"Host": "example.org", "Origin": "https://mail.example.org"})
        self.postAndDelete({"Host": "example.org:8080", "Origin": "http://example.org:8080"})

    def test_otherOriginsRefused(self):
        """
        Another origin, the public name over plain http or on another port,
        and an unknown Host stay refused.
        """
        for origin in ("https://evil.example", "http://mail.example.org",
                       "https://mail.example.org:8443", "null"):
            response = self.client.request(
                "POST", "/api/v1/users/alice/messages", json_={"from": "bob", "text": "x"},
                headers={"Host": "127.0.0.1:9080", "Origin": origin})
            self.assertError(response, 403)
        self.assertError(self.client.request(
            "GET", "/api/v1/users", headers={"Host": "evil.example"}), 403)
        self.assertEqual(self.store.messages("alice"), [])


class WebOptionTests(SynchronousTestCase):
    """
    C{--web ENDPOINT} in C{twistd simplemail}.
    """

    def test_webOff(self):
        """Without --web no web listener is made."""
        from twisted_mail.service import tap

        options = tap.Options()
        options.parseOptions(["--spool", self.mktemp()])
        self.assertEqual(options["web"], [])

    def test_webOrigin(self):
        """
        --web-origin is repeatable, kept as browsers send Origin (lower
        case, default port left out) and reaches the API; anything but an
        http(s) origin is a one-line usage error.
        """
        from twisted.internet.testing import MemoryReactor
        from twisted.python import usage

        from twisted_mail.service import tap
        from twisted_mail.doors.web.site import WebSite

        options = tap.Options()
        options.parseOptions([
            "--spool", self.mktemp(), "--web", "tcp:9080:interface=127.0.0.1",
            "--web-origin", "HTTPS://Mail.Example.ORG:443/",
            "--web-origin", "http://[::1]:8080"])
        self.assertEqual(options["web-origin"],
                         ["https://mail.example.org", "http://[::1]:8080"])
        reactor = MemoryReactor()
        service = tap.makeService(options, reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [site] = [factory for _, factory, _, _ in reactor.tcpServers
                  if isinstance(factory, WebSite)]
        self.addCleanup(site.resource.children[b"api"].store.close)
        self.assertEqual(site.resource.children[b"api"].origins,
                         {"https://mail.example.org", "http://[::1]:8080"})
        for bad in ("mail.example.org", "ftp://x", "https://x/inbox", "https://"):
            exc = self.assertRaises(usage.UsageError, tap.Options().parseOptions,
                                    ["--spool", self.mktemp(), "--web-origin", bad])
            self.assertIn("--web-origin", str(exc))
            self.assertNotIn("\n", str(exc))

    def test_badWebEndpoint(self):
        """A --web endpoint Twisted cannot parse is a one-line usage error."""
        from twisted.python import usage

        from twisted_mail.service import tap

        options = tap.Options()
        exc = self.assertRaises(usage.UsageError, options.parseOptions,
                                ["--spool", self.mktemp(), "--web", "tcp:notaport"])
        self.assertIn("--web", str(exc))
        self.assertNotIn("\n", str(exc))

    def test_webListeners(self):
        """Each --web listens with the web site, with the server's limits and store."""
        from twisted.internet.testing import MemoryReactor

        from twisted_mail.service import tap
        from twisted_mail.doors.web.site import WebSite

        reactor = MemoryReactor()
        options = tap.Options()
        options.parseOptions([
            "--spool", self.mktemp(), "--web", "tcp:9080:interface=127.0.0.1",
            "--web", "tcp:9081:interface=127.0.0.1", "--max-message-size", "100000",
            "--idle-timeout", "30", "--max-connections", "7"])
        service = tap.makeService(options, reactor=reactor)
        for child in service:
            store = getattr(getattr(child, "factory", None), "store", None)
            if store is not None:
                self.addCleanup(store.close)
                break
        service.startService()
        self.addCleanup(service.stopService)
        web = [(port, factory) for port, factory, _, _ in reactor.tcpServers
               if isinstance(factory, WebSite)]
        self.assertEqual([port for port, _ in web], [9080, 9081])
        factory = web[0][1]
        self.assertIs(web[1][1], factory)
        self.assertEqual(factory.maxConnections, 7)
        site = factory
        self.assertEqual((site.timeOut, site.maxBodySize), (30, 100000 + 64 * 1024))
        api = site.resource.children[b"api"]
        self.assertIs(api.store, store)
        self.assertIsNone(api.portal)
