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
  2. B{One check at a time per address, at most one a second.}  Whatever
     the number of connections, an address has at most one password check
     running in this process, and starts at most one check per
     L{CHECK_INTERVAL} seconds (a token bucket of one token, shared by
     every process that shares the counts; a right password gives its
     token back, so the users of one NAT address are not slowed by each
     other).  The attempts waiting for their turn are Deferreds in a list:
     they cost no CPU, and at most L{MAX_WAITING} wait per address (more
     are refused unchecked).
  3. B{A penalty per client address.}  Each failure from an address adds
     one to its score; a score of M{n} makes the address's next attempt
     wait until M{PENALTY_BASE * 2**(n-1)} seconds (at most
     L{PENALTY_CAP}) after its last failure.  One failure is forgiven
     every L{FORGIVE_AFTER} seconds, but the address is B{clean} again only
     L{CLEAN_AFTER} seconds after its last failure.  IPv6 addresses count
     by their /64 network (one host usually holds a whole /64).
  4. B{A limit per user name that never locks the right password out.}
     Failures for a user name from every address add to that name's
     score.  An address that is not clean waits for the larger of its own
     penalty and the name's, counted from the name's last failure B{and}
     from the last check any unclean address started on it: all the
     addresses that have failed share one guess per penalty period on a
     name under attack.  A clean address is never made to wait by the
     name.  Locking the account instead would hand every attacker a way to
     lock any user out.
  5. B{A bound on concurrent hashing, with priority.}  At most
     L{hashingConcurrency} password checks (scrypt, 16 MiB and ~50 ms each)
     run at once, and one more (the spare) for the first tier only.
     Waiting checks are served in three tiers: first a clean address's
     attempt on a user name with no recent failure and no other check of it
     under way, then other clean addresses' attempts, then those of
     addresses that have failed: an attack's first burst of new addresses
     on one name takes one slot, and does not queue the other users behind
     it.
  6. B{Every refusal logged once}, here, with the user name, the address and
     its recent failures (never the password).

The counts (scores, last failures, the token bucket) live in a
L{ISharedCounts}: by default L{MemoryCounts} in this process; the service
layer passes one that every worker and every server on one database share,
so that more processes do not mean more guesses.

The doors close a connection after L{MAX_FAILURES_PER_CONNECTION} failed
logins on it (L{tooManyFailures}).
"""

import collections
import ipaddress
import math
import os

from twisted.cred import error as credError
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import Interface, implementer

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

#: An address is clean (priority, never slowed by a user name) only when
#: its last failure is this many seconds old.
CLEAN_AFTER = 3600.0

#: An address starts at most one password check per this many seconds.
CHECK_INTERVAL = 1.0

#: The most attempts of one address waiting for their turn; more are
#: refused without a check.
MAX_WAITING = 64

#: Failed logins a connection may make before the door closes it.
MAX_FAILURES_PER_CONNECTION = 3

#: The most addresses and user names remembered (together); past it the
#: expired ones, then those expiring soonest, are forgotten.
MAX_TRACKED = 20000

#: Accounts one address may create (self-service sign-up) at once; one more
#: is allowed every L{SIGNUP_EVERY} seconds.
SIGNUP_BURST = 3
SIGNUP_EVERY = 1200.0

#: Before any time: the last failure of a key that never failed.
NEVER = -1e18


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


class ISharedCounts(Interface):
    """
    Where the throttle keeps its counts: rows of five floats by key (a text
    of at most 100 characters), changed atomically for every process that
    shares them.  A row is C{(keepUntil, score, updated, lastFailure,
    mark)}; the keeper only understands C{keepUntil}: a row may be
    forgotten once C{now} is past it, and, when rows must be dropped to
    stay bounded, those keeping soonest go first.
    """

    def update(keys, now, change):
        """
        Load the rows of C{keys} (a missing one is L{None}), call
        C{change(rows)} with a L{dict} of key to row, which may put new rows
        (tuples) in it, store them, and fire with what C{change} returned.
        Nothing else changes these rows meanwhile.  C{change} does no I/O
        and may run in another thread.

        @rtype: L{Deferred}
        """


@implementer(ISharedCounts)
class MemoryCounts:
    """
    Counts in this process's memory, bounded to C{limit} rows.
    """

    def __init__(self, limit=MAX_TRACKED):
        self._rows = {}
        self._limit = limit

    def update(self, keys, now, change):
        rows = {key: self._rows.get(key) for key in keys}
        result = change(rows)
        for key, row in rows.items():
            if row is not None:
                if key not in self._rows and len(self._rows) >= self._limit:
                    self._prune(now)
                self._rows[key] = tuple(row)
        return defer.succeed(result)

    def peek(self, key):
        """
        The row of C{key}, or L{None} (for tests and L{LoginThrottle}'s
        synchronous score helpers).
        """
        return self._rows.get(key)

    def _prune(self, now):
        for key in [k for k, row in self._rows.items() if row[0] < now]:
            del self._rows[key]
        if len(self._rows) >= self._limit:
            soonest = sorted(self._rows, key=lambda k: self._rows[k][0])
            for key in soonest[: len(soonest) // 2 + 1]:
                del self._rows[key]

    def __len__(self):
        return len(self._rows)


class _Counts:
    """
    One row of counts, as the throttle reads and writes it.
    """

    __slots__ = ("keepUntil", "score", "updated", "lastFailure", "mark")

    def __init__(self, row, now):
        if row is None:
            row = (now, 0.0, now, NEVER, NEVER)
        self.keepUntil, self.score, self.updated, self.lastFailure, self.mark = row
        # Forgive what time has forgiven.
        elapsed = max(0.0, now - self.updated)
        self.score = max(0.0, self.score - elapsed / FORGIVE_AFTER)
        self.updated = max(self.updated, now)

    def row(self):
        return (self.keepUntil, self.score, self.updated, self.lastFailure, self.mark)

    def keep(self, until):
        self.keepUntil = max(self.keepUntil, until)

    def clean(self, now):
        return self.lastFailure + CLEAN_AFTER <= now

    def fail(self, now):
        self.score += 1
        self.lastFailure = now
        self.keep(now + CLEAN_AFTER + PENALTY_CAP)

    def notBefore(self):
        return self.lastFailure + penalty(self.score)


def _addressKey(address):
    return "a:" + address[:98]


def _nameKey(user):
    return "u:" + user[:98]


def _signupKey(address):
    return "s:" + address[:98]


class _Slots:
    """
    A counting semaphore whose waiters come in tiers (0 first), with
    C{spare} more slots that only tier 0 may use: a clean address's first
    check never waits for an attacker's hash to end.
    """

    def __init__(self, tokens, spare=1, tiers=3):
        self.tokens = tokens
        self.spare = spare
        self._queues = [collections.deque() for _ in range(tiers)]

    def run(self, tier, f, *args):
        if self.tokens > 0:
            self.tokens -= 1
            fromSpare = False
            d = defer.succeed(None)
        elif tier == 0 and self.spare > 0:
            self.spare -= 1
            fromSpare = True
            d = defer.succeed(None)
        else:
            fromSpare = None  # told by the releaser
            d = defer.Deferred()
            self._queues[tier].append(d)
        d.addCallback(lambda spare: defer.maybeDeferred(f, *args).addBoth(
            self._release, fromSpare if spare is None else spare))
        return d

    def _release(self, result, spare):
        d = self._next(0 if spare else len(self._queues) - 1)
        if d is not None:
            d.callback(spare)
        elif spare:
            self.spare += 1
        else:
            self.tokens += 1
        return result

    def _next(self, lowest):
        """
        The next waiter of tier C{lowest} or better, or L{None}.
        """
        for queue in self._queues[: lowest + 1]:
            if queue:
                return queue.popleft()
        return None

    def waiting(self):
        return sum(len(q) for q in self._queues)


class _AddressTurn:
    """
    The attempts of one address, one at a time.
    """

    __slots__ = ("running", "waiting", "refused")

    def __init__(self):
        self.running = False
        self.waiting = collections.deque()
        # Attempts refused unchecked while the queue was full.
        self.refused = 0


class TooManyWaiting(credError.UnauthorizedLogin):
    """
    An address had L{MAX_WAITING} attempts waiting already: refused without
    a check (the client sees an ordinary refused login).
    """


@implementer(ICredentialsChecker)
class LoginThrottle:
    """
    Wraps an L{ICredentialsChecker} with the throttle of this module.

    @param checker: the checker of passwords.
    @param clock: an L{IReactorTime} for the delays.
    @param failureDelay: seconds before a failure is answered.
    @param concurrency: how many checks may run at once (default
        L{hashingConcurrency}).
    @param counts: the L{ISharedCounts} (default a new L{MemoryCounts}).
    """

    def __init__(
        self, checker, clock=None, failureDelay=FAILURE_DELAY, concurrency=None,
        counts=None,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self._checker = checker
        self.credentialInterfaces = checker.credentialInterfaces
        self._clock = clock
        self.failureDelay = failureDelay
        self.counts = MemoryCounts() if counts is None else counts
        self._turns = {}
        self._slots = _Slots(concurrency or hashingConcurrency())
        # User names with checks queued or running in this process, and
        # how many.
        self._namesChecked = {}

    # -- synchronous views, for tests and logs (memory counts only)

    def _peekScore(self, key):
        peek = getattr(self.counts, "peek", None)
        row = peek(key) if peek is not None else None
        if row is None:
            return 0.0
        return _Counts(row, self._clock.seconds()).score

    def addressScore(self, peer):
        """
        The recent failures counted against the client address C{peer}.
        """
        return self._peekScore(_addressKey(clientKey(peer)))

    def addressClean(self, peer):
        """
        Whether the client address C{peer} has had no failure for
        L{CLEAN_AFTER} seconds.
        """
        peek = getattr(self.counts, "peek", None)
        row = peek(_addressKey(clientKey(peer))) if peek is not None else None
        return row is None or _Counts(row, self._clock.seconds()).clean(self._clock.seconds())

    def userScore(self, username):
        """
        The recent failures counted against the user name C{username}.
        """
        return self._peekScore(_nameKey(_userKey(username)))

    # -- ICredentialsChecker

    def requestAvatarId(self, credentials):
        return self.guard(
            getattr(credentials, "peer", None),
            getattr(credentials, "username", None),
            self._checker.requestAvatarId,
            (credError.UnauthorizedLogin,),
            credentials,
        )

    def guard(self, peer, username, f, failures, *args):
        """
        Run C{f(*args)} as a password check of C{username} from C{peer}:
        in the address's turn, after its penalty, within the bound on
        concurrent checks.  A failure of one of the types C{failures} counts
        against the address and the name, is logged and answered after the
        failure delay.  (The doors use this for a sign-up that names an
        existing user, too: it tells as much as a wrong password.)
        """
        address = clientKey(peer)
        user = _userKey(username)
        d = self._enter(address)
        if d is None:
            return task.deferLater(self._clock, self.failureDelay, _tooMany)
        d.addCallback(lambda _: self._reserve(address, user))
        d.addCallback(lambda tier: self._check(tier, address, user, f, args))
        # The failure is counted before the next attempt of the address
        # starts; it is answered late, out of the address's turn.
        d.addErrback(self._failed, failures, address, user, peer)

        def leave(result):
            self._leave(address)
            return result

        d.addBoth(leave)
        d.addErrback(self._answerLate, failures)
        return d

    # -- one attempt at a time per address

    def _enter(self, address):
        turn = self._turns.get(address)
        if turn is None:
            turn = self._turns[address] = _AddressTurn()
        if not turn.running:
            turn.running = True
            return defer.succeed(None)
        if len(turn.waiting) >= MAX_WAITING:
            turn.refused += 1
            if turn.refused == 1:
                # Once while the queue stays full, not once per attempt.
                log.warn(
                    "logins refused unchecked from {peer}: {n} attempts already "
                    "waiting", peer=address, n=len(turn.waiting),
                )
            return None
        d = defer.Deferred()
        turn.waiting.append(d)
        return d

    def _leave(self, address):
        turn = self._turns.get(address)
        if turn is None or not turn.running:
            return
        if turn.waiting:
            turn.waiting.popleft().callback(None)
        else:
            del self._turns[address]

    # -- when the check may start

    def _reserve(self, address, user):
        """
        Wait until the address may start a check, reserving it in the
        shared counts; fire with the check's priority tier.
        """
        aKey, uKey = _addressKey(address), _nameKey(user)
        now = self._clock.seconds()

        def change(rows):
            a, u = _Counts(rows[aKey], now), _Counts(rows[uKey], now)
            clean = a.clean(now)
            start = max(now, a.mark)
            if not clean:
                start = max(start, a.notBefore(), u.notBefore(), u.mark + penalty(u.score))
            if start > now:
                return start, None
            a.mark = now + CHECK_INTERVAL
            a.keep(a.mark)
            rows[aKey] = a.row()
            if not clean:
                u.mark = now
                u.keep(now + PENALTY_CAP)
                rows[uKey] = u.row()
                return now, 2
            # The first tier: a name without recent failures, and without
            # another check of it under way here (so that a burst of new
            # addresses on one name takes one slot, not the spare one too).
            first = u.score <= 0 and not self._namesChecked.get(user)
            return now, 0 if first else 1

        def decided(result):
            start, tier = result
            if tier is not None:
                return tier
            # Sleep (no CPU, the address's turn held), then ask again: the
            # counts may have changed in another process meanwhile.
            return task.deferLater(
                self._clock, start - now, self._reserve, address, user)

        return self.counts.update([aKey, uKey], now, change).addCallback(decided)

    # -- the check

    def _check(self, tier, address, user, f, args):
        self._namesChecked[user] = self._namesChecked.get(user, 0) + 1

        def done(result):
            left = self._namesChecked[user] - 1
            if left:
                self._namesChecked[user] = left
            else:
                del self._namesChecked[user]
            return result

        d = self._slots.run(tier, f, *args)
        d.addBoth(done)
        d.addCallback(self._succeeded, address)
        return d

    def _succeeded(self, result, address):
        # A right password gives its token back.
        aKey = _addressKey(address)
        now = self._clock.seconds()

        def change(rows):
            if rows[aKey] is not None:
                a = _Counts(rows[aKey], now)
                a.mark = min(a.mark, now)
                rows[aKey] = a.row()

        return self.counts.update([aKey], now, change).addCallback(lambda _: result)

    def _failed(self, failure, failures, address, user, peer):
        failure.trap(*failures)
        aKey, uKey = _addressKey(address), _nameKey(user)
        now = self._clock.seconds()

        def change(rows):
            a, u = _Counts(rows[aKey], now), _Counts(rows[uKey], now)
            a.fail(now)
            u.fail(now)
            rows[aKey], rows[uKey] = a.row(), u.row()
            return a.score, u.score

        def counted(scores):
            fromAddress, forUser = scores
            log.warn(
                "login refused for {user} from {peer}: {reason} ({address} failures "
                "from this address, {failures} for this user name, recently)",
                user=user,
                peer=peer or "an unknown address",
                reason=_reason(failure),
                address=math.ceil(fromAddress),
                failures=math.ceil(forUser),
            )
            return failure

        return self.counts.update([aKey, uKey], now, change).addCallback(counted)

    def _answerLate(self, failure, failures):
        failure.trap(*failures)
        return task.deferLater(self._clock, self.failureDelay, failure.raiseException)

    # -- sign-up

    def signup(self, peer):
        """
        Take one of the address C{peer}'s account creations: fires with
        L{True} when it may create one now (L{SIGNUP_BURST} at once, then one
        every L{SIGNUP_EVERY} seconds), L{False} when it must wait.
        """
        key = _signupKey(clientKey(peer))
        now = self._clock.seconds()

        def change(rows):
            row = rows[key]
            # The score is the creations not yet forgiven; forgiven here at
            # the sign-up rate, not the login one.
            if row is None:
                used = 0.0
            else:
                used = max(0.0, row[1] - max(0.0, now - row[2]) / SIGNUP_EVERY)
            if used + 1 > SIGNUP_BURST:
                return False
            used += 1
            rows[key] = (now + used * SIGNUP_EVERY, used, now, NEVER, NEVER)
            return True

        return self.counts.update([key], now, change)


def _reason(failure):
    """
    Why a check failed, for the log: the text of its error (the checker
    names the reason; never the password), or its kind.
    """
    if failure.check(credError.UnauthorizedLogin) and not failure.value.args:
        return "refused"
    text = str(failure.value)
    return text if text else type(failure.value).__name__


def _tooMany():
    raise TooManyWaiting()
