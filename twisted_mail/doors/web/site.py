"""
The HTTP side of the web inbox: the site, its requests (security headers
on every answer, the request body limit), the connection limit, the page's
static files, and the sessions of logged-in users.  The JSON API itself is
in L{twisted_mail.doors.web.api}.
"""

import json
import secrets
from importlib import resources

from twisted.logger import Logger
from twisted.web import http, resource, server

from twisted_mail.doors.connections import CLOSE_GRACE, Closing, LimitedFactory

from twisted_mail.doors.web.api import WebAPI
from twisted_mail.doors.web.policy import CSP, JSON_ALLOWANCE, MAX_SESSIONS, SESSION_IDLE

log = Logger()

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}


def errorBody(text):
    """
    The JSON body of an error answer: C{{"error": text}}.
    """
    return json.dumps({"error": text}).encode("ascii")


def _rawAnswer(code, reason, text):
    """
    A whole HTTP answer, written straight to a connection that is about to
    close (before any request object could answer).
    """
    body = errorBody(text)
    return b"".join([
        b"HTTP/1.1 ", str(code).encode("ascii"), b" ", reason, b"\r\n",
        b"Content-Type: application/json\r\n",
        b"Content-Security-Policy: ", CSP, b"\r\n",
        b"X-Content-Type-Options: nosniff\r\n",
        b"Connection: close\r\n",
        b"Content-Length: ", str(len(body)).encode("ascii"), b"\r\n\r\n",
        body,
    ])


class WebRequest(server.Request):
    """
    A request that carries the security headers on every answer and
    refuses a body larger than the site's C{maxBodySize} with C{413} as
    soon as it is announced or passed, without storing it.
    """

    _refused = False
    _bodySize = 0

    def _limit(self):
        return self.channel.site.maxBodySize

    def gotLength(self, length):
        if length is not None and length > self._limit():
            # No "100 Continue" after the refusal: the body is not wanted.
            self.requestHeaders.removeHeader(b"expect")
            self._refuseTooLarge()
            return
        server.Request.gotLength(self, length)

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._bodySize += len(data)
        if self._bodySize > self._limit():
            self._refuseTooLarge()
            return
        server.Request.handleContentChunk(self, data)

    def _refuseTooLarge(self):
        if self._refused:
            return
        self._refused = True
        import io

        self.content = io.BytesIO()
        self.channel.transport.write(
            _rawAnswer(413, b"Content Too Large", "request body too large"))
        self.channel.closeConnection()

    def process(self):
        if self._refused:
            # Answered already; the connection is closing.
            return
        self.setHeader(b"content-security-policy", CSP)
        self.setHeader(b"x-content-type-options", b"nosniff")
        self.setHeader(b"referrer-policy", b"no-referrer")
        server.Request.process(self)


class _Channel(Closing, http.HTTPChannel):
    # Twisted's own abort of a timed-out connection that does not close
    # (a TLS client that never did its handshake), after our grace.
    abortTimeout = CLOSE_GRACE

    def connectionLost(self, reason):
        self.connectionClosed()
        http.HTTPChannel.connectionLost(self, reason)
        self.site.connectionEnded()


class WebSite(LimitedFactory, server.Site):
    """
    The site of the web inbox.

    @ivar maxBodySize: the largest request body accepted, in bytes.
    """

    requestFactory = WebRequest
    protocol = _Channel
    displayTracebacks = False
    noisy = False
    door = "a web"

    def __init__(self, root, maxBodySize, timeout, reactor=None, maxConnections=None):
        server.Site.__init__(self, root, timeout=timeout, reactor=reactor)
        self.maxBodySize = maxBodySize
        self.maxConnections = maxConnections

    def refusal(self):
        return _rawAnswer(503, b"Service Unavailable", "too many connections, try again later")

    def admit(self, addr):
        return server.Site.buildProtocol(self, addr)

    def log(self, request):
        # One line per request in the twistd log would drown the rest.
        pass


def staticFile(name):
    """
    The bytes of one of the page's files, shipped in the package.
    """
    return resources.files("twisted_mail.doors.web").joinpath("static", name).read_bytes()


class StaticFile(resource.Resource):
    """
    One of the page's files, read once.
    """

    isLeaf = True

    def __init__(self, name):
        resource.Resource.__init__(self)
        self.data = staticFile(name)
        self.contentType = _STATIC[name].encode("ascii")

    def render_GET(self, request):
        if request.postpath:
            return NotFound().render(request)
        request.setHeader(b"content-type", self.contentType)
        request.setHeader(b"cache-control", b"no-cache")
        return self.data

    render_HEAD = render_GET


class NotFound(resource.Resource):
    isLeaf = True

    def render(self, request):
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        return errorBody("not found")


class StaticFiles(resource.Resource):
    def __init__(self):
        resource.Resource.__init__(self)
        for name in _STATIC:
            if name != "index.html":
                self.putChild(name.encode("ascii"), StaticFile(name))

    def getChild(self, name, request):
        return NotFound()


class Root(resource.Resource):
    """
    C{/}: the inbox page; C{/static/}: its files; C{/api/}: the API.
    """

    def __init__(self, api):
        resource.Resource.__init__(self)
        self.putChild(b"", StaticFile("index.html"))
        self.putChild(b"static", StaticFiles())
        self.putChild(b"api", api)

    def getChild(self, name, request):
        return NotFound()

    def render(self, request):
        # "/" without a trailing path: only reached for an empty path.
        return NotFound().render(request)


class Sessions:
    """
    The sessions of logged-in users, in memory: a random token (the
    cookie) for a user id, ending after L{SESSION_IDLE} seconds unused.

    @param clock: an L{IReactorTime}.
    """

    def __init__(self, clock, idle=SESSION_IDLE, limit=MAX_SESSIONS):
        self._clock = clock
        self._idle = idle
        self._limit = limit
        self._sessions = {}

    def create(self, userid):
        """
        A new session for C{userid}; its token (L{bytes}).
        """
        now = self._clock.seconds()
        for token, (_, expires) in list(self._sessions.items()):
            if expires <= now:
                del self._sessions[token]
        while len(self._sessions) >= self._limit:
            del self._sessions[next(iter(self._sessions))]
        token = secrets.token_urlsafe(32).encode("ascii")
        self._sessions[token] = (userid, now + self._idle)
        return token

    def user(self, token):
        """
        The user id of the session C{token}, or L{None}; using it keeps it
        alive.
        """
        found = self._sessions.get(token)
        if found is None:
            return None
        userid, expires = found
        now = self._clock.seconds()
        if expires <= now:
            del self._sessions[token]
            return None
        # Re-inserted: the dict stays ordered by last use.
        del self._sessions[token]
        self._sessions[token] = (userid, now + self._idle)
        return userid

    def end(self, token):
        self._sessions.pop(token, None)


def makeWebFactory(store, domain, portal=None, passwordFile=None,
                   maxMessageSize=10 * 1024 * 1024, idleTimeout=300,
                   maxConnections=100, reactor=None, inThread=None, sessions=None,
                   signup=True, origins=()):
    """
    The factory serving the web inbox and the JSON API over C{store}.

    @param portal: the login portal (L{twisted_mail.logins.portal.makePortal}) when
        passwords are on, else L{None} (the API is open).
    @param passwordFile: the L{twisted_mail.logins.portal.PasswordFile} for new
        users' passwords, with C{portal}.
    @param inThread: C{inThread(f, *args)} runs blocking work (parsing a
        message, the password file) and returns a L{Deferred}; default the
        reactor's thread pool.
    @param sessions: where login sessions are kept (an object with
        L{Sessions}' C{create}, C{user} and C{end}); default a L{Sessions}
        in this process's memory.  Several server processes behind one
        port would need one they share.
    @param signup: L{False} with C{--no-signup}: C{POST /api/v1/users} is
        refused.
    @param origins: C{--web-origin}: the public origins (URLs) the page is
        served from behind a reverse proxy, accepted by the Host and Origin
        checks (docs/web.rst).
    """
    if reactor is None:
        from twisted.internet import reactor
    api = WebAPI(store, domain, portal=portal, passwordFile=passwordFile,
                 maxMessageSize=maxMessageSize,
                 sessions=sessions if sessions is not None else Sessions(reactor),
                 reactor=reactor, inThread=inThread, signup=signup, origins=origins)
    site = WebSite(Root(api), maxBodySize=maxMessageSize + max(JSON_ALLOWANCE, maxMessageSize // 4),
                   timeout=idleTimeout, reactor=reactor, maxConnections=maxConnections)
    return site
