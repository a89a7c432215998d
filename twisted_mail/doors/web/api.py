"""
The JSON API of the web inbox, C{/api/v1/} (ACCESS.md, docs/web.rst).

It reads and changes mail only through the mailbox view of the store
(C{openMailbox}, C{listMessages}, C{fetchMessage}, C{deleteMessages},
C{subscribe}); messages are read by L{twisted_mail.mail.mime}, in a thread.
Every failure is answered C{{"error": "..."}} with the status code of the
contract; anything unexpected is logged and answered C{500} without details.
"""

import base64
import binascii
import ipaddress
import json
import os
import re
from urllib.parse import quote

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web import resource, server

from twisted_mail import errors
from twisted_mail.logins.portal import IMailAccount, LoginAttempt
from twisted_mail.mail.message import buildMessageWithSubject
from twisted_mail.mail.mime import parseMessage, popSize
from twisted_mail.doors.web.openapi import openAPIDocument
from twisted_mail.doors.web.search import searchMessages
from twisted_mail.doors.web.policy import COOKIE, DOWNLOAD_CSP, FRAME_CSP
from twisted_mail.doors.web.streams import HANDLED, EventStream, stream
from twisted_mail.wire import normalizeUserId

log = Logger()

#: Message ids of the mailbox view.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_DIGITS = re.compile(r"[0-9]{1,9}\Z")

#: The default and the largest page of a listing.
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

#: How many of the newest messages are searched for the one just sent.
_FIND_SENT = 50

#: Attachment types served as what they are; any other as octet-stream.
_SAFE_TYPES = frozenset([
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf",
    "text/plain", "text/csv", "application/zip", "audio/mpeg", "video/mp4",
])

_STATE_CHANGING = frozenset([b"POST", b"DELETE", b"PUT", b"PATCH"])


class HTTPError(Exception):
    """
    Answer C{code} with C{{"error": text}}.
    """

    def __init__(self, code, text, headers=()):
        Exception.__init__(self, code, text)
        self.code = code
        self.text = text
        self.headers = headers


_STORE_ERRORS = [
    (errors.NoSuchUser, 404),
    (errors.NoSuchMessage, 404),
    (errors.UserExists, 409),
    (errors.InvalidUserId, 400),
    (errors.MessageTooLarge, 413),
    (errors.TemporaryFailure, 503),
    (errors.MailboxUnavailable, 503),
    (errors.ProtocolError, 400),
    (errors.LoginFailed, 401),
    (errors.InvalidFolderName, 400),
    (errors.NoSuchFolder, 404),
    (errors.InvalidQuery, 400),
]


class _Auth:
    """
    Who made a request: C{userid} (L{None} with passwords off) and whether
    a session cookie said so.
    """

    def __init__(self, userid=None, cookie=None):
        self.userid = userid
        self.cookie = cookie


def _pathUser(segment):
    try:
        return normalizeUserId(segment)
    except errors.InvalidUserId:
        raise HTTPError(404, "no such user")


def _pathMessage(segment):
    if not _MESSAGE_ID.match(segment):
        raise HTTPError(404, "no such message")
    return segment


def _contentDisposition(filename):
    ascii = re.sub(r'[^A-Za-z0-9._ -]', "_", filename) or "attachment"
    return 'attachment; filename="{}"; filename*=UTF-8\'\'{}'.format(
        ascii, quote(filename.encode("utf-8", "replace"), safe="")
    ).encode("ascii")


class WebAPI(resource.Resource):
    """
    C{/api/v1/...}: one leaf resource that routes by path segments, so that
    every answer (even for a path that names nothing) is JSON.
    """

    isLeaf = True

    def __init__(self, store, domain, portal=None, passwordFile=None,
                 maxMessageSize=10 * 1024 * 1024, sessions=None, reactor=None,
                 inThread=None):
        resource.Resource.__init__(self)
        if reactor is None:
            from twisted.internet import reactor
        self.store = store
        self.domain = domain
        self.portal = portal
        self.passwordFile = passwordFile
        self.maxMessageSize = maxMessageSize
        self.sessions = sessions
        self.reactor = reactor
        if inThread is None:
            def inThread(f, *args):
                return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
        self.inThread = inThread
        self._openapi = json.dumps(openAPIDocument(passwords=portal is not None), indent=1).encode("ascii")

    # -- answering

    def render(self, request):
        d = defer.maybeDeferred(self._route, request)
        d.addCallbacks(self._answer, self._failed, callbackArgs=(request,),
                       errbackArgs=(request,))
        return server.NOT_DONE_YET

    def _answer(self, result, request):
        if result is HANDLED:
            return
        code, body = result
        self._write(request, code, body)

    def _write(self, request, code, body):
        if request.finished or request._disconnected:
            return
        request.setResponseCode(code)
        request.setHeader(b"cache-control", b"no-store")
        if body is None:
            request.responseHeaders.removeHeader(b"content-type")
            request.setHeader(b"content-length", b"0")
        else:
            data = json.dumps(body).encode("ascii")
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"content-length", str(len(data)).encode("ascii"))
            request.write(data)
        request.finish()

    def _failed(self, failure, request):
        exc = failure.value
        if isinstance(exc, HTTPError):
            code, text = exc.code, exc.text
            for name, value in exc.headers:
                request.setHeader(name, value)
        else:
            for kind, status in _STORE_ERRORS:
                if isinstance(exc, kind):
                    code, text = status, str(exc)
                    break
            else:
                log.failure("unexpected error answering {method} {path}",
                            failure=failure, method=request.method, path=request.path)
                code, text = 500, "internal error"
        self._write(request, code, {"error": text})

    # -- routing

    def _route(self, request):
        try:
            path = [s.decode("ascii") for s in request.postpath]
        except UnicodeDecodeError:
            raise HTTPError(404, "not found")
        method = request.method
        if method == b"HEAD":
            method = b"GET"
        self._checkHost(request)
        if not path or path[0] != "v1":
            raise HTTPError(404, "not found")
        path = path[1:]
        n = len(path)
        if n == 1 and path[0] == "openapi.json":
            return self._handle(request, method, {b"GET": self.getOpenAPI}, auth=False)
        if n == 1 and path[0] == "login":
            return self._handle(request, method, {b"POST": self.postLogin}, auth=False)
        if n == 1 and path[0] == "logout":
            return self._handle(request, method, {b"POST": self.postLogout}, auth=False)
        if n == 1 and path[0] == "session":
            return self._handle(request, method, {b"GET": self.getSession}, auth=False)
        if n == 1 and path[0] == "users":
            return self._handle(request, method,
                                {b"GET": self.getUsers, b"POST": self.postUser})
        if n >= 3 and path[0] == "users":
            user = path[1]
            rest = path[2:]
            if rest == ["messages"]:
                return self._handle(request, method, {
                    b"GET": self.getMessages, b"POST": self.postMessage}, user)
            if rest == ["events"]:
                return self._handle(request, method, {b"GET": self.getEvents}, user)
            if len(rest) >= 2 and rest[0] == "messages":
                msgid = rest[1]
                if len(rest) == 2:
                    return self._handle(request, method, {
                        b"GET": self.getMessage, b"DELETE": self.deleteMessage},
                        user, msgid)
                if rest[2:] == ["raw"]:
                    return self._handle(request, method, {b"GET": self.getRaw},
                                        user, msgid)
                if rest[2:] == ["html"]:
                    return self._handle(request, method, {b"GET": self.getHTML},
                                        user, msgid)
                if len(rest) == 4 and rest[2] == "parts":
                    return self._handle(request, method, {b"GET": self.getPart},
                                        user, msgid, rest[3])
        raise HTTPError(404, "not found")

    def _handle(self, request, method, handlers, *args, auth=True):
        handler = handlers.get(method)
        if handler is None:
            allowed = sorted(m.decode("ascii") for m in handlers)
            if b"GET" in handlers:
                allowed.append("HEAD")
            raise HTTPError(405, "method not allowed",
                            [(b"allow", ", ".join(allowed).encode("ascii"))])
        if method in _STATE_CHANGING:
            self._checkSameSite(request)
        if not auth:
            return handler(request, *args)
        d = self._authenticate(request)

        def authenticated(who):
            if who.cookie is not None and method in _STATE_CHANGING:
                if request.getHeader(b"x-simplemail") != b"1":
                    raise HTTPError(403, "the header X-Simplemail: 1 is required")
            return handler(request, who, *args)

        return d.addCallback(authenticated)

    def _checkHost(self, request):
        """
        On a loopback listener, answer only requests for a loopback name
        or an address: a web page elsewhere whose host name was made to
        point at 127.0.0.1 (DNS rebinding) must not read the mail here.
        """
        local = getattr(request.getHost(), "host", None)
        if local is None or not _isLoopback(local):
            return
        host = (request.getHeader(b"host") or b"").decode("latin-1").lower()
        if host.startswith("["):
            name = host[1:].partition("]")[0]
        else:
            name = host.rpartition(":")[0] if ":" in host else host
        if name in ("localhost", self.domain.lower()) or name.endswith(".localhost"):
            return
        try:
            ipaddress.ip_address(name)
        except ValueError:
            raise HTTPError(403, "unknown host name {!r}: use an address or localhost".format(
                name[:100]))

    def _checkSameSite(self, request):
        """
        Refuse a state-changing request a browser says comes from another
        site (with passwords off too: no web page elsewhere may act on the
        mail here).
        """
        if request.getHeader(b"sec-fetch-site") == b"cross-site":
            raise HTTPError(403, "cross-site request refused")
        origin = request.getHeader(b"origin")
        if origin is not None:
            host = request.getHeader(b"host") or b""
            if origin.split(b"://", 1)[-1] != host:
                raise HTTPError(403, "cross-site request refused")

    # -- who is asking

    def _authenticate(self, request):
        """
        A L{Deferred} firing with the L{_Auth} of C{request}, or failing
        with a 401 L{HTTPError}.
        """
        if self.portal is None:
            return defer.succeed(_Auth())
        token = request.getCookie(COOKIE)
        if token:
            userid = self.sessions.user(token)
            if userid is not None:
                return defer.succeed(_Auth(userid, token))
        header = request.getHeader(b"authorization")
        if header and header[:6].lower() == b"basic ":
            try:
                user, sep, password = base64.b64decode(
                    header[6:].strip(), validate=True).partition(b":")
                user.decode("utf-8")
                password.decode("utf-8")
            except (binascii.Error, ValueError):
                return defer.fail(self._loginNeeded(request))
            if not sep:
                return defer.fail(self._loginNeeded(request))
            d = self._login(request, user, password)
            d.addCallback(_Auth)
            d.addErrback(self._refused, request)
            return d
        return defer.fail(self._loginNeeded(request))

    def _loginNeeded(self, request, text="login needed"):
        headers = []
        if request.getHeader(b"x-simplemail") is None:
            # Programs get the Basic challenge; the page (which sends the
            # header) its own login form rather than the browser's dialog.
            headers.append((b"www-authenticate", b'Basic realm="simplemail", charset="UTF-8"'))
        return HTTPError(401, text, headers)

    def _login(self, request, user, password):
        peer = request.getClientAddress()
        credentials = LoginAttempt(user, password, getattr(peer, "host", None))
        d = self.portal.login(credentials, None, IMailAccount)
        return d.addCallback(lambda result: result[1].userid)

    def _refused(self, failure, request):
        if not failure.check(HTTPError):
            if not failure.check(UnauthorizedLogin, errors.MailError):
                log.failure("login failed unexpectedly", failure=failure)
            log.info("failed web login from {peer}",
                     peer=getattr(request.getClientAddress(), "host", "?"))
            raise self._loginNeeded(request, "login failed")
        return failure

    def _own(self, who, user):
        """
        The canonical id of the path's user, who must be the one logged in.
        """
        userid = _pathUser(user)
        if who.userid is not None and who.userid != userid:
            raise HTTPError(403, "not your mailbox")
        return userid

    # -- request bodies

    def _json(self, request, fields):
        """
        The request body as a JSON object whose C{fields} (name: (type,
        required)) are checked.
        """
        data = request.content.read() if request.content is not None else b""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, "the request body is not UTF-8")
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            raise HTTPError(400, "the request body is not JSON")
        if not isinstance(body, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        for name, (kind, required) in fields.items():
            if name not in body or body[name] is None:
                if required:
                    raise HTTPError(400, "{} is required".format(name))
                continue
            value = body[name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise HTTPError(400, "{} must be a {}".format(
                    name, "string" if kind is str else kind.__name__))
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise HTTPError(400, "{} is not valid Unicode".format(name))
        return body

    def _bodyUser(self, value, name):
        try:
            return normalizeUserId(value)
        except errors.InvalidUserId:
            raise HTTPError(400, "{} is not a valid user id".format(name))

    # -- the mailbox

    def _withSession(self, userid, work):
        """
        Open C{userid}'s mailbox, run C{work(session)} and close it again.
        """
        d = self.store.openMailbox(userid)

        def opened(session):
            d = defer.maybeDeferred(work, session)

            def closed(result):
                session.close()
                return result

            return d.addBoth(closed)

        return d.addCallback(opened)

    def _fetch(self, userid, msgid):
        return self._withSession(userid, lambda s: s.fetchMessage(msgid))

    def _parsed(self, userid, msgid):
        d = self._fetch(userid, msgid)
        return d.addCallback(lambda text: self.inThread(_parse, text))

    # -- handlers

    def getOpenAPI(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache")
        request.write(self._openapi)
        request.finish()
        return HANDLED

    def getSession(self, request):
        userid = None
        if self.portal is not None:
            token = request.getCookie(COOKIE)
            if token:
                userid = self.sessions.user(token)
        return 200, {"user": userid, "passwords": self.portal is not None}

    def postLogin(self, request):
        body = self._json(request, {"user": (str, True), "password": (str, True)})
        if self.portal is None:
            raise HTTPError(400, "passwords are not enabled on this server")
        d = self._login(request, body["user"].encode("utf-8"),
                        body["password"].encode("utf-8"))

        def loggedIn(userid):
            token = self.sessions.create(userid)
            request.addCookie(COOKIE, token, path=b"/", httpOnly=True,
                              sameSite="Strict", secure=request.isSecure() or None)
            log.info("web login of {user}", user=userid)
            return 200, {"user": userid}

        def refused(failure):
            failure.trap(UnauthorizedLogin, errors.MailError)
            log.info("failed web login from {peer}",
                     peer=getattr(request.getClientAddress(), "host", "?"))
            raise HTTPError(401, "login failed")

        return d.addCallbacks(loggedIn, refused)

    def postLogout(self, request):
        token = request.getCookie(COOKIE)
        if token and self.sessions is not None and self.sessions.user(token):
            if request.getHeader(b"x-simplemail") != b"1":
                raise HTTPError(403, "the header X-Simplemail: 1 is required")
            self.sessions.end(token)
        request.addCookie(COOKIE, b"", path=b"/", httpOnly=True, sameSite="Strict",
                          max_age=b"0")
        return 204, None

    def getUsers(self, request, who):
        return self.store.listUsers().addCallback(lambda users: (200, {"users": users}))

    def postUser(self, request, who):
        body = self._json(request, {"user": (str, True), "password": (str, False)})
        userid = self._bodyUser(body["user"], "user")
        password = body.get("password")
        if self.passwordFile is None and password is not None:
            raise HTTPError(400, "passwords are not enabled on this server")
        if self.passwordFile is not None and not password:
            raise HTTPError(400, "password is required")
        d = self.store.addUser(userid)
        if self.passwordFile is not None:
            d.addCallback(lambda userid: self.inThread(
                self.passwordFile.setPassword, userid, password).addCallback(
                    lambda _: userid))

        def added(userid):
            log.info("web: added user {user}", user=userid)
            return 201, {"user": userid}

        return d.addCallback(added)

    def getMessages(self, request, who, user):
        userid = self._own(who, user)
        start = self._intArg(request, b"start", 0, None)
        limit = self._intArg(request, b"limit", DEFAULT_LIMIT, MAX_LIMIT)
        extra = {}
        d = searchMessages(self.store, request, userid, start, limit)
        if d is None:
            d = self._withSession(
                userid, lambda s: s.listMessages(start, limit, newestFirst=True))
        else:
            d.addCallback(lambda found: extra.update(found[1]) or found[0])

        def listed(listing):
            return 200, dict({
                "user": userid,
                "total": listing.total,
                "start": start,
                "messages": [m.asDict() for m in listing.messages],
            }, **extra)

        return d.addCallback(listed)

    def _intArg(self, request, name, default, maximum):
        values = request.args.get(name)
        if not values:
            return default
        try:
            value = values[-1].decode("ascii")
        except UnicodeDecodeError:
            value = ""
        if not _DIGITS.match(value):
            raise HTTPError(400, "{} must be a whole number".format(name.decode()))
        value = int(value)
        if maximum is not None and value > maximum:
            raise HTTPError(400, "{} must be at most {}".format(name.decode(), maximum))
        if maximum is not None and value < 1:
            raise HTTPError(400, "{} must be at least 1".format(name.decode()))
        return value

    def getMessage(self, request, who, user, msgid):
        userid = self._own(who, user)
        msgid = _pathMessage(msgid)
        return self._parsed(userid, msgid).addCallback(
            lambda parsed: (200, _messageView(msgid, *parsed)))

    def getRaw(self, request, who, user, msgid):
        userid = self._own(who, user)
        msgid = _pathMessage(msgid)

        def fetched(text):
            request.setHeader(b"content-type", b"message/rfc822")
            request.setHeader(b"content-security-policy", DOWNLOAD_CSP)
            request.setHeader(b"content-disposition",
                              'inline; filename="{}.eml"'.format(msgid).encode("ascii"))
            request.setHeader(b"cache-control", b"no-store")
            stream(request, text)
            return HANDLED

        return self._fetch(userid, msgid).addCallback(fetched)

    def getHTML(self, request, who, user, msgid):
        userid = self._own(who, user)
        msgid = _pathMessage(msgid)

        def parsed(result):
            _, message = result
            if message.html is None:
                raise HTTPError(404, "no HTML part")
            if request._disconnected:
                return HANDLED
            data = message.html.encode("utf-8", "replace")
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"content-security-policy", FRAME_CSP)
            request.setHeader(b"cache-control", b"no-store")
            request.setHeader(b"content-length", str(len(data)).encode("ascii"))
            request.write(data)
            request.finish()
            return HANDLED

        return self._parsed(userid, msgid).addCallback(parsed)

    def getPart(self, request, who, user, msgid, number):
        userid = self._own(who, user)
        msgid = _pathMessage(msgid)
        if not _DIGITS.match(number):
            raise HTTPError(404, "no such part")
        number = int(number)

        def parsed(result):
            _, message = result
            for part in message.parts:
                if part.part == number:
                    return self.inThread(part.content).addCallback(send, part)
            raise HTTPError(404, "no such part")

        def send(data, part):
            ctype = part.contentType if part.contentType in _SAFE_TYPES else \
                "application/octet-stream"
            request.setHeader(b"content-type", ctype.encode("ascii"))
            request.setHeader(b"content-disposition", _contentDisposition(part.filename))
            request.setHeader(b"content-security-policy", DOWNLOAD_CSP)
            request.setHeader(b"cache-control", b"no-store")
            stream(request, data)
            return HANDLED

        return self._parsed(userid, msgid).addCallback(parsed)

    def deleteMessage(self, request, who, user, msgid):
        userid = self._own(who, user)
        msgid = _pathMessage(msgid)

        def delete(session):
            def deleted(ids):
                if msgid not in ids:
                    raise HTTPError(404, "no such message")
                log.info("web: deleted message {id} of {user}", id=msgid, user=userid)
                # Answered once the delete is durable; the session's close
                # (which expunges) follows.
                self._write(request, 204, None)
                return HANDLED

            return session.deleteMessages([msgid]).addCallback(deleted)

        return self._withSession(userid, delete)

    def postMessage(self, request, who, user):
        body = self._json(request, {
            "from": (str, who.userid is None), "subject": (str, False),
            "text": (str, True)})
        receiver = _pathUser(user)
        sender = self._bodyUser(body.get("from") or who.userid, "from")
        if who.userid is not None and sender != who.userid:
            raise HTTPError(403, "you can only send as yourself")
        subject = body.get("subject") or ""
        text = body["text"]
        if len(text) > self.maxMessageSize:
            raise errors.MessageTooLarge(self.maxMessageSize)
        messageId = "<{}@{}>".format(os.urandom(16).hex(), self.domain)
        message = buildMessageWithSubject(sender, receiver, subject, text, self.domain,
                                          self.reactor.seconds(), messageId)
        d = self.store.hasUser(sender)
        d.addErrback(_senderMissing, sender)
        d.addCallback(lambda _: self.store.deliverMessage(
            "{}@{}".format(sender, self.domain), receiver, message))
        d.addCallback(lambda _: self._findSent(receiver, message, messageId))

        def sent(msgid):
            log.info("web: {sender} sent a message to {receiver}", sender=sender,
                     receiver=receiver)
            return 201, {"id": msgid}

        return d.addCallback(sent)

    def _findSent(self, receiver, message, messageId):
        """
        The id of the message just delivered: among the newest of the
        mailbox, the one with its size (first) that holds its Message-ID.
        Other deliveries at the same time cannot mislead it; it is L{None}
        only if the message was deleted (or buried under more than
        L{_FIND_SENT} newer ones) before it was looked for.
        """
        size = popSize(message)
        marker = b"\nMessage-ID: " + messageId.encode("ascii") + b"\n"

        def search(session):
            def listed(listing):
                candidates = sorted(listing.messages, key=lambda m: m.size != size)
                return _firstHolding(session, [m.id for m in candidates], marker)

            return session.listMessages(0, _FIND_SENT, newestFirst=True).addCallback(listed)

        return self._withSession(receiver, search)

    def getEvents(self, request, who, user):
        userid = self._own(who, user)

        def found(userid):
            if request._disconnected:
                return HANDLED
            if request.method == b"HEAD":
                request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
                return 200, None
            return EventStream(self.store, userid, request, self.reactor).start()

        return self.store.hasUser(userid).addCallback(found)


def _isLoopback(address):
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


def _senderMissing(failure, sender):
    failure.trap(errors.NoSuchUser)
    raise HTTPError(404, "no such sender: {}".format(sender))


@defer.inlineCallbacks
def _firstHolding(session, ids, marker):
    for msgid in ids:
        try:
            text = yield session.fetchMessage(msgid)
        except errors.NoSuchMessage:
            continue
        head = text[: text.find(b"\n\n") + 1]
        if marker in b"\n" + head:
            return msgid
    return None


def _parse(text):
    return popSize(text), parseMessage(text)


def _messageView(msgid, size, message):
    """
    The JSON of one message: the summary fields, its headers, text, HTML
    and parts.
    """
    fields = message.summaryFields()
    return {
        "id": msgid,
        "from": fields["sender"],
        "to": fields["to"],
        "subject": fields["subject"],
        "date": fields["date"],
        "size": size,
        "snippet": fields["snippet"],
        "attachments": fields["attachments"],
        "headers": [[name, value] for name, value in message.headers],
        "text": message.text,
        "html": message.html,
        "parts": [part.asDict() for part in message.parts],
    }
