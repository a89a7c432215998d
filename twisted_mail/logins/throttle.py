"""
One login throttle in front of the password checker, for every door (the
line protocol, POP3, SMTP submission, the web login): L{LoginThrottle}, an
L{ICredentialsChecker} that wraps the real one and is installed by
L{twisted_mail.logins.portal.makePortal}.

What it does with each attempt (an L{twisted_mail.logins.portal.LoginAttempt}: a user
name, a password and the client's address):

  1. B{Failures answered late.}  A wrong password is answered only after
     L{FAILURE_DELAY} seconds (as Dovecot's C{auth_failure_delay}); a right
     one at once.
  2. B{A penalty per client address.}  Each failure from an address adds
     one to its score; a score of M{n} makes the address's next attempt
     wait until M{PENALTY_BASE * 2**(n-1)} seconds (at most
     L{PENALTY_CAP}) after its last failure.  One failure is forgiven
     every L{FORGIVE_AFTER} seconds.  An address with failures is served
     one attempt at a time, failure delay included: opening more
     connections does not buy more guesses.  IPv6 addresses count by their
     /64 network (one host usually holds a whole /64).
  3. B{A limit per user name that never locks the right password out.}
     Failures for a user name from every address add to that name's
     score.  That score slows only addresses that have failed themselves
     (their next attempt waits for the larger of the two penalties); a
     clean address (no failures not yet forgiven) is never made to wait.
     So a botnet guessing one user's password gets one free guess per
     address, then each of its addresses is slowed by the whole attack's
     failures, while the user, from an address that has not failed, logs in
     at once.  Locking the account instead would hand every attacker a way
     to lock any user out.
  4. B{A bound on concurrent hashing.}  At most L{hashingConcurrency}
     password hashes (scrypt, 16 MiB and ~50 ms each) run at once: one per
     core but one, at least one; attempts from clean addresses are served
     before attempts from addresses with failures, so an attack does not
     queue the other users behind it.
  5. B{Every refusal logged once}, here, with the user name, the address and
     its recent failures.

The doors close a connection after L{MAX_FAILURES_PER_CONNECTION} failed
logins on it (L{tooManyFailures}).
"""

import ipaddress
import math
import os

from twisted.cred import error as credError
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

#: Seconds before a failed login is answered.
FAILURE_DELAY = 2.0

#: The penalty of an address (or user name) with one failure, in seconds;
#: it doubles with each further failure.
PENALTY_BASE = 0.5

#: The longest penalty, in seconds.
PENALTY_CAP = 60.0

#: One failure of an address or user name is forgiven every this many
#: seconds.
FORGIVE_AFTER = 60.0

#: Failed logins a connection may make before the door closes it.
MAX_FAILURES_PER_CONNECTION = 3

#: The most addresses (and, separately, user names) remembered; past it the
#: forgiven ones, then the longest quiet ones, are forgotten.
MAX_TRACKED = 10000


def tooManyFailures(failures):
    """
    Whether a connection that has had C{failures} failed logins should be
    closed (after answering the last one).  Every door calls this.
    """
    return failures >= MAX_FAILURES_PER_CONNECTION


def hashingConcurrency(cpus=None):
    """
    How many password hashes may run at once: one per core but one, at
    least one, so that logins never take every core.
    """
    if cpus is None:
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def clientKey(peer):
    """
    The key a client address counts under: the address itself for IPv4,
    its /64 network for IPv6, and the text given for anything else (a Unix
    socket: every local client counts as one).
    """
    if peer is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return str(peer)
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network((address, 64), strict=False))
    return str(address)


def _userKey(username):
    if isinstance(username, bytes):
        username = username.decode("utf-8", "replace")
    return str(username or "").strip().lower()[:64]


def penalty(score):
    """
    The penalty, in seconds, of a score of C{score} failures (forgiveness
    makes it fractional: a part of a failure counts as a whole one).
    """
    failures = math.ceil(score - 1e-9)
    if failures <= 0:
        return 0.0
    return min(PENALTY_CAP, PENALTY_BASE * 2 ** min(failures - 1, 32))


class _Score:
    """
    The recent failures of one address or user name.
    """

    __slots__ = ("score", "updated", "lastFailure")

    def __init__(self, now):
        self.score = 0.0
        self.updated = now
        self.lastFailure = now

    def current(self, now):
        """
        The score now, after forgiving what time has forgiven.
        """
        elapsed = max(0.0, now - self.updated)
        self.score = max(0.0, self.score - elapsed / FORGIVE_AFTER)
        self.updated = now
        return self.score

    def fail(self, now):
        self.current(now)
        self.score += 1
        self.lastFailure = now


class _Scores:
    """
    Scores by key, bounded to L{MAX_TRACKED} keys.
    """

    def __init__(self, limit=MAX_TRACKED):
        self._scores = {}
        self._limit = limit

    def current(self, key, now):
        record = self._scores.get(key)
        return 0.0 if record is None else record.current(now)

    def notBefore(self, key, now):
        """
        When the next attempt of C{key} may start: its last failure plus its
        penalty.
        """
        record = self._scores.get(key)
        if record is None:
            return now
        return record.lastFailure + penalty(record.current(now))

    def fail(self, key, now):
        record = self._scores.get(key)
        if record is None:
            if len(self._scores) >= self._limit:
                self._prune(now)
            record = self._scores[key] = _Score(now)
        record.fail(now)
        return record.score

    def _prune(self, now):
        for key in [k for k, r in self._scores.items() if r.current(now) <= 0]:
            del self._scores[key]
        if len(self._scores) >= self._limit:
            quiet = sorted(self._scores, key=lambda k: self._scores[k].lastFailure)
            for key in quiet[: len(quiet) // 2 + 1]:
                del self._scores[key]

    def __len__(self):
        return len(self._scores)


class _Slots:
    """
    A counting semaphore whose waiters come in two classes: urgent ones
    (clean addresses) are served before the others.
    """

    def __init__(self, tokens):
        self.tokens = tokens
        self._urgent = []
        self._other = []

    def run(self, urgent, f, *args):
        if self.tokens > 0:
            self.tokens -= 1
            d = defer.succeed(None)
        else:
            d = defer.Deferred()
            (self._urgent if urgent else self._other).append(d)
        d.addCallback(lambda _: defer.maybeDeferred(f, *args))

        def release(result):
            waiting = self._urgent or self._other
            if waiting:
                waiting.pop(0).callback(None)
            else:
                self.tokens += 1
            return result

        return d.addBoth(release)


class _AddressTurn:
    """
    The attempts of one address with failures, one at a time.
    """

    __slots__ = ("running", "waiting")

    def __init__(self):
        self.running = 0
        self.waiting = []


@implementer(ICredentialsChecker)
class LoginThrottle:
    """
    Wraps an L{ICredentialsChecker} with the throttle of this module.

    @param checker: the checker of passwords.
    @param clock: an L{IReactorTime} for the delays.
    @param failureDelay: seconds before a failure is answered.
    @param concurrency: how many checks may run at once (default
        L{hashingConcurrency}).
    """

    def __init__(self, checker, clock=None, failureDelay=FAILURE_DELAY, concurrency=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self._checker = checker
        self.credentialInterfaces = checker.credentialInterfaces
        self._clock = clock
        self.failureDelay = failureDelay
        self._addresses = _Scores()
        self._users = _Scores()
        self._turns = {}
        self._slots = _Slots(concurrency or hashingConcurrency())

    def addressScore(self, peer):
        """
        The recent failures counted against the client address C{peer}.
        """
        return self._addresses.current(clientKey(peer), self._clock.seconds())

    def userScore(self, username):
        """
        The recent failures counted against the user name C{username}.
        """
        return self._users.current(_userKey(username), self._clock.seconds())

    def requestAvatarId(self, credentials):
        peer = getattr(credentials, "peer", None)
        address = clientKey(peer)
        user = _userKey(getattr(credentials, "username", None))
        d = self._enter(address)
        d.addCallback(lambda _: self._attempt(address, user, peer, credentials))

        def leave(result):
            self._leave(address)
            return result

        return d.addBoth(leave)

    # -- one attempt at a time for an address with failures

    def _clean(self, address):
        return self._addresses.current(address, self._clock.seconds()) <= 0

    def _enter(self, address):
        turn = self._turns.get(address)
        if turn is None:
            turn = self._turns[address] = _AddressTurn()
        if turn.running and not self._clean(address):
            d = defer.Deferred()
            turn.waiting.append(d)
            return d
        turn.running += 1
        return defer.succeed(None)

    def _leave(self, address):
        turn = self._turns[address]
        turn.running -= 1
        if turn.waiting and not turn.running:
            turn.running += 1
            turn.waiting.pop(0).callback(None)
        elif not turn.running and not turn.waiting:
            del self._turns[address]

    # -- the attempt

    def _attempt(self, address, user, peer, credentials):
        now = self._clock.seconds()
        clean = self._clean(address)
        start = now
        if not clean:
            start = max(
                self._addresses.notBefore(address, now),
                self._users.notBefore(user, now),
            )
        wait = max(0.0, start - now)
        if wait:
            d = task.deferLater(self._clock, wait, lambda: None)
        else:
            d = defer.succeed(None)
        d.addCallback(
            lambda _: self._slots.run(clean, self._checker.requestAvatarId, credentials)
        )
        d.addErrback(self._failed, address, user, peer)
        return d

    def _failed(self, failure, address, user, peer):
        failure.trap(credError.UnauthorizedLogin)
        now = self._clock.seconds()
        fromAddress = self._addresses.fail(address, now)
        forUser = self._users.fail(user, now)
        log.warn(
            "login refused for {user} from {peer} ({address} failures from this "
            "address, {failures} for this user name, recently)",
            user=user,
            peer=peer or "an unknown address",
            address=math.ceil(fromAddress),
            failures=math.ceil(forUser),
        )
        return task.deferLater(self._clock, self.failureDelay, failure.raiseException)
