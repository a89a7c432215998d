"""
The JSON API of the web inbox, C{/api/v1/} (ACCESS.md, docs/web.rst).

It reads and changes mail only through the store's folder views
(C{openMailbox} for INBOX, C{openFolder}, C{listMessages}, C{fetchMessage},
C{deleteMessages}, C{setFlags}, C{markSeen}, C{moveMessages}) and its
folder and event calls (L{twisted_mail.doors.web.folders}); messages are
read by L{twisted_mail.mail.mime}, in a thread.
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
from twisted_mail.logins.signup import createAccount
from twisted_mail.doors.web.offload import (
    Offloader,
    composeFromBody,
    messageHTML,
    messagePart,
    messageViewJSON,
)
from twisted_mail.mail.model import SEEN
from twisted_mail.doors.web.folders import FolderHandlers, HTTPError, summaryDict
from twisted_mail.doors.web.inputs import RequestInputs
from twisted_mail.doors.web.openapi import openAPIDocument
from twisted_mail.doors.web.policy import (
    COOKIE, DOWNLOAD_CSP, FRAME_CSP, normaliseOrigin, originHost)
from twisted_mail.doors.web.search import searchMessages
from twisted_mail.doors.web.streams import HANDLED, EventStream, stream
from twisted_mail.wire import normalizeUserId

log = Logger()

#: Message ids of the mailbox view.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_DIGITS = re.compile(r"[0-9]{1,9}\Z")

#: The default and the largest page of a listing.
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

#: The folder the page keeps a copy of what it sends in.
SENT = "Sent"

#: Attachment types served as what they are; any other as octet-stream.
_SAFE_TYPES = frozenset([
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf",
    "text/plain", "text/csv", "application/zip", "audio/mpeg", "video/mp4",
])

_STATE_CHANGING = frozenset([b"POST", b"DELETE", b"PUT", b"PATCH"])


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
    (errors.SignupLimited, 429),
    (errors.InvalidFolderName, 400),
    (errors.NoSuchFolder, 404),
    (errors.FolderExists, 409),
    (errors.FolderNotChangeable, 400),
    (errors.InvalidFlag, 400),
    (errors.TooManyKeywords, 400),
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


class WebAPI(RequestInputs, FolderHandlers, resource.Resource):
    """
    C{/api/v1/...}: one leaf resource that routes by path segments, so that
    every answer (even for a path that names nothing) is JSON.
    """

    isLeaf = True

    def __init__(self, store, domain, portal=None, passwordFile=None,
                 maxMessageSize=10 * 1024 * 1024, sessions=None, reactor=None,
                 inThread=None, signup=True, origins=(), offload=None):
        resource.Resource.__init__(self)
        # False with --no-signup: POST /users is refused, whatever the name.
        self.signup = signup
        self._setOrigins(origins)
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
        # offload(f, source, *args): big pure work in a helper process.
        self.offload = offload or Offloader(reactor, inThread).run
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
            # UTF-8: folder names are Unicode (percent-encoded in the URL).
            path = [s.decode("utf-8") for s in request.postpath]
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
            if method == b"POST" and not self.signup:
                # Before the login: the same refusal for anyone.
                raise HTTPError(403, str(errors.SignupClosed()))
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
            if rest == ["folders"]:
                return self._handle(request, method, {
                    b"GET": self.getFolders, b"POST": self.postFolder}, user)
            if len(rest) >= 2 and rest[0] == "folders":
                # A name's "/" is sent as %2F; a bare one is taken as the same.
                return self._handle(request, method, {
                    b"PATCH": self.patchFolder, b"DELETE": self.deleteFolder},
                    user, "/".join(rest[1:]))
            if len(rest) >= 2 and rest[0] == "messages":
                msgid = rest[1]
                if len(rest) == 2:
                    return self._handle(request, method, {
                        b"GET": self.getMessage, b"DELETE": self.deleteMessage,
                        b"PATCH": self.patchMessage},
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

    def _setOrigins(self, origins):
        """
        Keep C{--web-origin}: the public origins the page is served from
        behind a proxy (normalised, see L{normaliseOrigin}), accepted by
        the Host and Origin checks.
        """
        self.origins = frozenset(normaliseOrigin(origin) for origin in origins)
        self._originHosts = frozenset(originHost(origin) for origin in self.origins)

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
        if (name in ("localhost", self.domain.lower()) or name.endswith(".localhost")
                or name in self._originHosts):
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
        if origin is not None and self.origins:
            try:
                if normaliseOrigin(origin.decode("ascii")) in self.origins:
                    return
            except (UnicodeDecodeError, ValueError):
                raise HTTPError(403, "cross-site request refused")
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
        if not token:
            return self._basicAuth(request)
        # Sessions may answer later (in the database with --database).
        d = defer.maybeDeferred(self.sessions.user, token)
        return d.addCallback(
            lambda userid: _Auth(userid, token) if userid is not None
            else self._basicAuth(request))

    def _basicAuth(self, request):
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
            # The login throttle logged the refusal, with its reason.
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

    # -- the mailbox

    def _fetch(self, request, userid, msgid):
        """
        The text of message C{msgid}, in the folder the C{folder} parameter
        names or any (see L{FolderHandlers._locate}); no flag changes.
        """
        return self._locate(userid, msgid, self._folderArg(request, None),
                            lambda view, text: text)

    # -- handlers

    def getOpenAPI(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache")
        request.write(self._openapi)
        request.finish()
        return HANDLED

    def getSession(self, request):
        token = request.getCookie(COOKIE) if self.portal is not None else None
        d = defer.maybeDeferred(self.sessions.user, token) if token else defer.succeed(None)
        return d.addCallback(
            lambda userid: (200, {"user": userid, "passwords": self.portal is not None}))

    def postLogin(self, request):
        body = self._json(request, {"user": (str, True), "password": (str, True)})
        if self.portal is None:
            raise HTTPError(400, "passwords are not enabled on this server")
        d = self._login(request, body["user"].encode("utf-8"),
                        body["password"].encode("utf-8"))

        def loggedIn(userid):
            return defer.maybeDeferred(self.sessions.create, userid).addCallback(
                created, userid)

        def created(token, userid):
            request.addCookie(COOKIE, token, path=b"/", httpOnly=True,
                              sameSite="Strict", secure=request.isSecure() or None)
            log.info("web login of {user}", user=userid)
            return 200, {"user": userid}

        def refused(failure):
            failure.trap(UnauthorizedLogin, errors.MailError)
            # The login throttle logged the refusal, with its reason.
            raise HTTPError(401, "login failed")

        return d.addCallbacks(loggedIn, refused)

    def postLogout(self, request):
        token = request.getCookie(COOKIE)
        d = defer.succeed(None)
        if token and self.sessions is not None:
            d = defer.maybeDeferred(self.sessions.user, token)

        def found(userid):
            if userid:
                if request.getHeader(b"x-simplemail") != b"1":
                    raise HTTPError(403, "the header X-Simplemail: 1 is required")
                return self.sessions.end(token)

        def ended(_):
            request.addCookie(COOKIE, b"", path=b"/", httpOnly=True, sameSite="Strict",
                              max_age=b"0")
            return 204, None

        return d.addCallback(found).addCallback(ended)

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
        d = self._createAccount(request, userid, password)

        def added(userid):
            log.info("web: added user {user}", user=userid)
            return 201, {"user": userid}

        return d.addCallback(added)

    def _createAccount(self, request, userid, password):
        # Sign-up through the login throttle (twisted_mail/logins/signup.py).
        return createAccount(
            self.store, userid, password, self.passwordFile, self.inThread, self.portal,
            getattr(request.getClientAddress(), "host", None),
        )

    def getMessages(self, request, who, user):
        userid = self._own(who, user)
        start = self._intArg(request, b"start", 0, None)
        limit = self._intArg(request, b"limit", DEFAULT_LIMIT, MAX_LIMIT)
        extra = {}
        d = searchMessages(self.store, request, userid, start, limit)
        if d is None:
            folder = self._folderArg(request)
            d = self._listing(request, userid, folder, start, limit)
        else:
            d.addCallback(lambda found: extra.update(found[1]) or found[0])

        def listed(listing):
            return 200, dict({
                "user": userid,
                "total": listing.total,
                "start": start,
                "messages": [summaryDict(m) for m in listing.messages],
            }, **extra)

        return d.addCallback(listed)

    def _listing(self, request, userid, folder, start, limit):
        """
        The page of summaries C{GET .../messages} answers, newest first (a
        search, C{q=}, plugs in here).
        """
        return self._withFolder(
            userid, folder, lambda view: view.listMessages(start, limit, newestFirst=True))

    def getMessage(self, request, who, user, msgid):
        """
        One message; with C{?seen=1} (the page opening it) it is marked
        C{\\Seen}, as a read through any door does.
        """
        userid = self._own(who, user)
        msgid = _pathMessage(msgid)
        # Read and encoded together, by a helper process when it is big.
        seen = self._flagArg(request, b"seen")

        def found(view, text):
            d = view.markSeen([msgid]) if seen else defer.succeed(None)
            # Only the flags: the helper reads the rest from the text (the
            # store's summary would parse a big message in this process).
            d.addCallback(lambda _: view.flagsOf(msgid))
            d.addCallback(lambda flags: self.offload(
                messageViewJSON, text, msgid, (view.folder, sorted(flags))))
            return d.addCallback(lambda data: self._writeEncoded(request, data))

        return self._locate(userid, msgid, self._folderArg(request, None), found)

    def _writeEncoded(self, request, data):
        """
        Answer 200 with C{data}, a JSON document already encoded (L{bytes},
        or the pieces a helper process sent), a piece at a time.
        """
        if not (request.finished or request._disconnected):
            request.setHeader(b"cache-control", b"no-store")
            request.setHeader(b"content-type", b"application/json")
            stream(request, data)
        return HANDLED

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

        return self._fetch(request, userid, msgid).addCallback(fetched)

    def getHTML(self, request, who, user, msgid):
        userid = self._own(who, user)
        msgid = _pathMessage(msgid)

        def send(data):
            if data is None:
                raise HTTPError(404, "no HTML part")
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"content-security-policy", FRAME_CSP)
            request.setHeader(b"cache-control", b"no-store")
            stream(request, data)
            return HANDLED

        # Read by a helper process when it is big, as the view.
        d = self._fetch(request, userid, msgid)
        return d.addCallback(lambda text: self.offload(messageHTML, text)).addCallback(send)

    def getPart(self, request, who, user, msgid, number):
        userid = self._own(who, user)
        msgid = _pathMessage(msgid)
        if not _DIGITS.match(number):
            raise HTTPError(404, "no such part")
        number = int(number)

        def send(found):
            if found is None:
                raise HTTPError(404, "no such part")
            part, data = found
            ctype = part["contentType"] if part["contentType"] in _SAFE_TYPES else \
                "application/octet-stream"
            request.setHeader(b"content-type", ctype.encode("ascii"))
            request.setHeader(b"content-disposition", _contentDisposition(part["filename"]))
            request.setHeader(b"content-security-policy", DOWNLOAD_CSP)
            request.setHeader(b"cache-control", b"no-store")
            stream(request, data)
            return HANDLED

        d = self._fetch(request, userid, msgid)
        return d.addCallback(lambda text: self.offload(messagePart, text, number)).addCallback(
            send)

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

        return self._locate(userid, msgid, self._folderArg(request, None),
                            lambda view, text: delete(view))

    def postMessage(self, request, who, user):
        # Decoded and built together, by a helper process when it is big
        # (the body, which twisted.web keeps in a file when it is big, is
        # not read here at once: it is fed to the helper a piece at a time).
        source = request.content if request.content is not None else b""
        receiver = _pathUser(user)
        messageId = "<{}@{}>".format(os.urandom(16).hex(), self.domain)
        now = self.reactor.seconds()
        d = self.offload(
            composeFromBody, source,
            {"from": ("str", who.userid is None), "subject": ("str", False),
             "text": ("str", True), "keepCopy": ("bool", False)},
            who.userid, receiver, self.domain, now, messageId)
        return d.addCallback(self._postMessage, who, receiver, messageId, now)

    def _postMessage(self, result, who, receiver, messageId, now):
        ok, body = result
        if not ok:
            raise HTTPError(400, body)
        sender = self._bodyUser(body["from"] or who.userid, "from")
        if who.userid is not None and sender != who.userid:
            raise HTTPError(403, "you can only send as yourself")
        if body["length"] > self.maxMessageSize:
            raise errors.MessageTooLarge(self.maxMessageSize)
        message = body["message"]
        if isinstance(message, list):
            # The pieces it came in from a helper process: the store
            # takes bytes.
            message = b"".join(message)
        d = self.store.hasUser(sender)
        d.addErrback(_senderMissing, sender)
        d.addCallback(lambda _: self.store.deliverMessage(
            "{}@{}".format(sender, self.domain), receiver, message))

        def sent(msgid):
            log.info("web: {sender} sent a message to {receiver}", sender=sender,
                     receiver=receiver)
            if not body.get("keepCopy"):
                return 201, {"id": msgid}
            d = self._keepCopy(sender, message, now)
            return d.addCallback(lambda copy: (201, {"id": msgid, "copy": copy}))

        return d.addCallback(sent)

    def _keepCopy(self, sender, message, now):
        """
        Keep a copy of a message sent in the sender's C{Sent}, read: its id,
        or L{None} if that failed (the message itself is delivered, so the
        answer is still a success; the failure is logged).
        """
        def append():
            return defer.maybeDeferred(self.store.appendMessage, sender, SENT, message,
                                       flags=(SEEN,), arrived=now)

        def missing(failure):
            failure.trap(errors.NoSuchFolder)
            return self.store.createFolder(sender, SENT).addCallback(lambda _: append())

        def failed(failure):
            log.failure("web: could not keep a copy in {user}'s Sent", failure=failure,
                        user=sender)
            return None

        d = append()
        d.addErrback(missing)
        d.addCallback(lambda summary: summary.id)
        return d.addErrback(failed)

    def getEvents(self, request, who, user):
        userid = self._own(who, user)

        def found(userid):
            if request._disconnected:
                return HANDLED
            if request.method == b"HEAD":
                request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
                return 200, None
            return EventStream(self.store, userid, request, self.reactor, summaryDict).start()

        return self.store.hasUser(userid).addCallback(found)


def _isLoopback(address):
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


def _senderMissing(failure, sender):
    failure.trap(errors.NoSuchUser)
    raise HTTPError(404, "no such sender: {}".format(sender))
