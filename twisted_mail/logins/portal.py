"""
Optional passwords: a file of salted scrypt hashes and a L{twisted.cred}
checker and realm over it.

The password file holds one line per user::

    bob:scrypt$16384$8$1$<salt, base64>$<hash, base64>

It is written atomically with mode 0600 and never holds a password in
plain text.  Hashing runs in a worker thread; an unknown user costs the same
hash as a known one and gets the same answer as a wrong password.
"""

import base64
import hashlib
import hmac
import os
import tempfile

from twisted.cred import error as credError
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import Interface, implementer

from twisted_mail import errors
from twisted_mail.logins.throttle import LoginThrottle
from twisted_mail.wire import normalizeUserId

log = Logger()

_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


def hashPassword(password, salt=None):
    """
    A storable salted hash of C{password} (L{str}).

    @rtype: L{str}
    """
    if salt is None:
        salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN,
        maxmem=64 * 1024 * 1024,
    )
    return "scrypt${}${}${}${}${}".format(
        _N, _R, _P, base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    )


def verifyPassword(password, stored):
    """
    Whether C{password} matches the stored hash, compared in constant time.
    A malformed stored hash matches nothing.
    """
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = int(n), int(r), int(p)
        if not (n > 1 and r > 0 and p > 0 and r * n * p <= _MOST_WORK):
            # A hand-edited line must not hold a login thread for hours.
            return False
        salt = base64.b64decode(salt, validate=True)
        digest = base64.b64decode(digest, validate=True)
        computed = hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(digest),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, digest)


#: The most scrypt work (r * N * p) a stored hash may ask for: 64 times what
#: the hashes written here cost.
_MOST_WORK = 64 * _R * _N * _P

# Compared against for unknown users, so that they cost the same work.
_DUMMY = hashPassword("not a password", salt=b"\0" * 16)


class PasswordFile:
    """
    The password file: C{userid:hash} lines.

    Methods are synchronous (they read or write the file): run them in a
    worker thread from the reactor.
    """

    def __init__(self, path):
        self.path = getattr(path, "path", path)

    def read(self):
        """
        @return: a L{dict} of user id to stored hash; empty if the file does
            not exist yet.
        """
        try:
            # A byte order mark (a file saved by Notepad) is not part of
            # the first user id; bytes that are not UTF-8 (a Latin-1
            # comment) are kept as they are, through a rewrite too.
            with open(self.path, "r", encoding="utf-8-sig",
                      errors="surrogateescape", newline="") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return {}
        hashes = {}
        for line in lines:
            line = line.rstrip("\r")  # CRLF line ends (a Windows editor)
            userid, sep, stored = line.partition(":")
            if sep and userid:
                hashes[userid] = stored
        return hashes

    def lookup(self, userid):
        return self.read().get(userid)

    def setPassword(self, userid, password):
        """
        Set (or replace) C{userid}'s password, rewriting the file atomically
        with mode 0600.
        """
        userid = normalizeUserId(userid)
        if not password:
            raise errors.ProtocolError("a password cannot be empty")
        hashes = self.read()
        hashes[userid] = hashPassword(password)
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".passwords.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
                for name in sorted(hashes):
                    f.write("{}:{}\n".format(name, hashes[name]))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        dirfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


@implementer(IUsernamePassword)
class LoginAttempt(UsernamePassword):
    """
    A user name and password, and where they came from: what every door
    (line protocol, POP3, submission, web) hands its portal, so that one
    login throttle in front of the checker can count failures per client
    address as well as per user name.

    @ivar peer: the client's address (an IP address as text, or another
        name for a non-IP transport), or L{None} when unknown.
    """

    def __init__(self, username, password, peer=None):
        UsernamePassword.__init__(self, username, password)
        self.peer = peer


def peerAddress(transport):
    """
    The client address of a connection, as L{LoginAttempt} wants it: the IP
    address without the port (every connection from one host counts as
    one client), or a name for other transports.
    """
    try:
        peer = transport.getPeer()
    except Exception:
        return None
    host = getattr(peer, "host", None)
    if host is not None:
        return host
    return getattr(peer, "name", None) or type(peer).__name__


class IMailAccount(Interface):
    """
    The avatar of a logged-in mail user: just its user id.
    """


@implementer(IMailAccount)
class MailAccount:
    def __init__(self, userid):
        self.userid = userid


@implementer(ICredentialsChecker)
class PasswordFileChecker:
    """
    Checks user names and passwords against a L{PasswordFile}, hashing in a
    thread pool.  With a C{store}, a right password of a user without a
    mailbox is refused too (as a wrong one, so that its answer tells
    nothing; the log says why).

    Each refusal is an L{UnauthorizedLogin} whose text is the reason, for
    the throttle's log line (never the password).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, passwordFile, reactor=None, threadpool=None, store=None):
        if reactor is None:
            from twisted.internet import reactor
        self._file = passwordFile
        self._reactor = reactor
        self._threadpool = threadpool
        self._store = store

    def requestAvatarId(self, credentials):
        pool = self._threadpool or self._reactor.getThreadPool()
        d = deferToThreadPool(self._reactor, pool, self._check, credentials)
        if self._store is not None:
            d.addCallback(self._hasMailbox)
        return d

    def _hasMailbox(self, avatarId):
        def missing(failure):
            failure.trap(errors.NoSuchUser)
            raise credError.UnauthorizedLogin(
                "the password is right but the user has no mailbox "
                "(make it with simplemail-passwd --spool or --database)")

        userid = avatarId.decode("ascii")
        return self._store.hasUser(userid).addCallbacks(lambda _: avatarId, missing)

    def _check(self, credentials):
        username = credentials.username
        password = credentials.password
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        try:
            userid = normalizeUserId(username)
        except errors.InvalidUserId:
            userid = None
        stored = self._file.lookup(userid) if userid else None
        matched = verifyPassword(password, stored or _DUMMY)
        if userid is None:
            raise credError.UnauthorizedLogin("not a valid user name")
        if stored is None:
            raise credError.UnauthorizedLogin("no password set for this user name")
        if not matched:
            raise credError.UnauthorizedLogin("wrong password")
        return userid.encode("ascii")


@implementer(IRealm)
class MailRealm:
    def requestAvatar(self, avatarId, mind, *interfaces):
        if IMailAccount not in interfaces:
            raise NotImplementedError("only IMailAccount avatars")
        userid = avatarId.decode("ascii") if isinstance(avatarId, bytes) else avatarId
        return IMailAccount, MailAccount(userid), lambda: None


class MailPortal(Portal):
    """
    The L{Portal} of mail users; C{throttle} is its login throttle (the
    doors' sign-up runs through it too).
    """

    def __init__(self, realm, throttle):
        Portal.__init__(self, realm, [throttle])
        self.throttle = throttle


def makePortal(passwordFile, reactor=None, throttle=None, counts=None, store=None):
    """
    A L{Portal} logging mail users in with the passwords of C{passwordFile},
    through the one login throttle (L{twisted_mail.logins.throttle}) that every
    door shares: build it once and hand it to every listener.

    @param throttle: the L{twisted_mail.logins.throttle.LoginThrottle} keyword
        arguments (C{failureDelay}, C{concurrency}), for tests.
    @param counts: the throttle's L{twisted_mail.logins.throttle.ISharedCounts}
        (shared by the workers and servers of one spool or database; by
        default this process's memory).
    @param store: the L{IMailStore}: a user without a mailbox is refused.
    """
    checker = PasswordFileChecker(passwordFile, reactor=reactor, store=store)
    return MailPortal(
        MailRealm(),
        LoginThrottle(checker, clock=reactor, counts=counts, **(throttle or {})),
    )
