"""
Tests for L{twisted_mail.logins.throttle}: the one login throttle in front of the
password checker.
"""

from twisted.cred import error as credError
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_mail.logins import throttle
from twisted_mail.logins.portal import LoginAttempt

ATTACKER = "192.0.2.66"
USER_HOME = "198.51.100.7"


@implementer(ICredentialsChecker)
class FakeChecker:
    """
    Passwords in a dict; each check either answers at once or waits for the
    test (C{manual}), and is recorded.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, passwords, manual=False):
        self.passwords = passwords
        self.manual = manual
        self.checks = []
        self.pending = []

    def requestAvatarId(self, credentials):
        self.checks.append((credentials.username, credentials.peer))
        if credentials.password == self.passwords.get(credentials.username):
            result = defer.succeed(credentials.username)
        else:
            result = defer.fail(credError.UnauthorizedLogin())
        if not self.manual:
            return result
        d = defer.Deferred()
        self.pending.append((d, result))
        return d

    def finish(self, index=0):
        d, result = self.pending.pop(index)
        result.chainDeferred(d)


class ThrottleTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.checker = FakeChecker({b"bob": b"right", b"alice": b"hers"})
        self.throttle = throttle.LoginThrottle(self.checker, clock=self.clock, concurrency=1)

    def attempt(self, user, password, peer):
        return self.throttle.requestAvatarId(LoginAttempt(user, password, peer))

    def settle(self, *ds):
        """
        Advance the clock in small steps until every one of C{ds} has a
        result (as little time as that takes: failures are forgiven with
        time).
        """
        for _ in range(1000):
            results = []
            for d in ds:
                d.addBoth(lambda r: results.append(r) or r)
            if len(results) == len(ds):
                return
            self.clock.advance(0.5)
        self.fail("no result after 500 seconds")

    def failAndWait(self, user, peer):
        d = self.attempt(user, b"wrong", peer)
        self.settle(d)
        self.failureResultOf(d, credError.UnauthorizedLogin)

    def test_interface(self):
        """
        The throttle is a credentials checker for what its checker checks.
        """
        verifyObject(ICredentialsChecker, self.throttle)
        self.assertEqual(self.throttle.credentialInterfaces, (IUsernamePassword,))

    def test_failureAnsweredLate(self):
        """
        A wrong password is answered only after the failure delay; a right
        one at once.
        """
        d = self.attempt(b"bob", b"wrong", ATTACKER)
        self.clock.advance(throttle.FAILURE_DELAY - 0.1)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, credError.UnauthorizedLogin)
        self.assertEqual(self.successResultOf(self.attempt(b"bob", b"right", USER_HOME)), b"bob")

    def test_penaltyGrowsPerAddress(self):
        """
        Each failure from an address makes its next attempt wait longer,
        doubling up to the cap.
        """
        waits = []
        for _ in range(10):
            self.failAndWait(b"bob", ATTACKER)
            started = self.clock.seconds()
            before = len(self.checker.checks)
            d = self.attempt(b"bob", b"wrong", ATTACKER)
            while len(self.checker.checks) == before:
                self.clock.advance(0.25)
            waits.append(self.clock.seconds() - started)
            self.settle(d)
            self.failureResultOf(d)
        self.assertEqual(waits, sorted(waits))
        self.assertLessEqual(waits[-1], throttle.PENALTY_CAP)
        self.assertGreaterEqual(waits[-1], throttle.PENALTY_CAP - 2 * throttle.FAILURE_DELAY)

    def test_rightPasswordFromCleanAddressDuringAttack(self):
        """
        While one address has failed many times for bob, bob's right
        password from another address logs in at once.
        """
        for _ in range(12):
            self.failAndWait(b"bob", ATTACKER)
        pending = self.attempt(b"bob", b"wrong", ATTACKER)
        self.assertEqual(self.successResultOf(self.attempt(b"bob", b"right", USER_HOME)), b"bob")
        self.settle(pending)
        self.failureResultOf(pending)

    def test_rightPasswordFromAttackingAddressWaits(self):
        """
        The penalty of an address holds even for a right password from it.
        """
        for _ in range(6):
            self.failAndWait(b"bob", ATTACKER)
        d = self.attempt(b"alice", b"hers", ATTACKER)
        self.assertNoResult(d)
        self.settle(d)
        self.assertEqual(self.successResultOf(d), b"alice")

    def test_userNameSlowsFailedAddressesOnly(self):
        """
        Failures for one user name from many addresses slow each of those
        addresses' next attempt, but not a clean address.
        """
        bots = ["203.0.113.{}".format(i) for i in range(1, 11)]
        for bot in bots:
            self.failAndWait(b"bob", bot)
        self.assertGreater(self.throttle.userScore(b"bob"), 9)
        d = self.attempt(b"bob", b"wrong", bots[0])
        self.clock.advance(throttle.FAILURE_DELAY * 2)
        self.assertNoResult(d)
        self.assertEqual(self.successResultOf(self.attempt(b"bob", b"right", USER_HOME)), b"bob")
        self.settle(d)
        self.failureResultOf(d)

    def test_oneAttemptAtATimeForAFailedAddress(self):
        """
        An address with failures gets one check at a time, each after its
        growing penalty: more connections buy no more guesses.
        """
        self.failAndWait(b"bob", ATTACKER)
        before = len(self.checker.checks)
        attempts = [self.attempt(b"bob", b"wrong", ATTACKER) for _ in range(4)]
        self.clock.advance(0.9)
        self.assertEqual(len(self.checker.checks) - before, 1)
        self.settle(*attempts)
        for d in attempts:
            self.failureResultOf(d)
        self.assertEqual(len(self.checker.checks) - before, 4)

    def test_forgiven(self):
        """
        Failures are forgiven with time (one a minute), and an address is
        clean again after an hour without failures.
        """
        for _ in range(3):
            self.failAndWait(b"bob", ATTACKER)
        self.assertGreater(self.throttle.addressScore(ATTACKER), 2)
        self.clock.advance(3 * throttle.FORGIVE_AFTER)
        self.assertEqual(self.throttle.addressScore(ATTACKER), 0)
        self.assertEqual(self.successResultOf(self.attempt(b"bob", b"right", ATTACKER)), b"bob")
        self.clock.advance(throttle.CLEAN_AFTER)
        self.assertTrue(self.throttle.addressClean(ATTACKER))

    def test_refusalLoggedOnce(self):
        """
        Each refusal is logged once, with the user name and the address.
        """
        with capturedLogs() as events:
            self.failAndWait(b"bob", ATTACKER)
        refusals = [e for e in events if "login refused" in e.get("log_format", "")]
        self.assertEqual(len(refusals), 1)
        self.assertEqual((refusals[0]["user"], refusals[0]["peer"]), ("bob", ATTACKER))

    def test_hashingBounded(self):
        """
        At most C{concurrency} checks run at once, and a clean address's
        check goes before those of addresses with failures.
        """
        for bot in ("203.0.113.1", "203.0.113.2"):
            self.failAndWait(b"bob", bot)
        self.checker.manual = True
        self.checker.checks = []
        first = self.attempt(b"carol", b"x", "203.0.113.9")
        dirty = [self.attempt(b"bob", b"wrong", bot) for bot in ("203.0.113.1", "203.0.113.2")]
        self.clock.advance(5)
        clean = self.attempt(b"bob", b"right", USER_HOME)
        self.assertEqual(len(self.checker.checks), 1)
        self.checker.finish()
        self.assertEqual(self.checker.checks[1], (b"bob", USER_HOME))
        self.checker.finish()
        self.assertEqual(self.successResultOf(clean), b"bob")
        while self.checker.pending or len(self.checker.checks) < 4:
            if self.checker.pending:
                self.checker.finish()
            self.clock.advance(0.5)
        self.settle(first, *dirty)
        self.failureResultOf(first)
        for d in dirty:
            self.failureResultOf(d)

    def test_otherErrorsPassThrough(self):
        """
        A checker error other than a refused login is passed on at once,
        and not counted as a failure.
        """
        self.checker.requestAvatarId = lambda c: defer.fail(credError.UnhandledCredentials())
        self.failureResultOf(self.attempt(b"bob", b"x", ATTACKER), credError.UnhandledCredentials)
        self.assertEqual(self.throttle.addressScore(ATTACKER), 0)


class HelperTests(SynchronousTestCase):
    def test_tooManyFailures(self):
        """
        A connection is closed at the third failed login.
        """
        self.assertEqual(
            [throttle.tooManyFailures(n) for n in range(1, 5)], [False, False, True, True]
        )

    def test_clientKey(self):
        """
        IPv4 addresses count alone, IPv6 ones by their /64, IPv4-mapped IPv6
        as IPv4, and anything else by its name.
        """
        self.assertEqual(throttle.clientKey("192.0.2.1"), "192.0.2.1")
        self.assertEqual(
            throttle.clientKey("2001:db8:1:2:3:4:5:6"), throttle.clientKey("2001:db8:1:2::9")
        )
        self.assertNotEqual(
            throttle.clientKey("2001:db8:1:2::1"), throttle.clientKey("2001:db8:1:3::1")
        )
        self.assertEqual(throttle.clientKey("::ffff:192.0.2.1"), "192.0.2.1")
        self.assertEqual(throttle.clientKey("UNIXAddress"), "UNIXAddress")
        self.assertEqual(throttle.clientKey(None), "unknown")

    def test_hashingConcurrency(self):
        """
        Hashing may use every core but one, and at least one.
        """
        self.assertEqual(
            [throttle.hashingConcurrency(n) for n in (1, 2, 4)], [1, 1, 3]
        )

    def test_countsBounded(self):
        """
        The counts remember a bounded number of addresses and user names.
        """
        counts = throttle.MemoryCounts(limit=100)
        for i in range(1000):
            key = "a:198.51.100.{}".format(i)
            counts.update([key], float(i), lambda rows, k=key, i=i: rows.update(
                {k: (i + 10.0, 1.0, i, i, i)}))
        self.assertLessEqual(len(counts), 100)
        self.assertIsNotNone(counts.peek("a:198.51.100.999"))


class BurstTests(SynchronousTestCase):
    """
    Issue 23, item 1: bursts of attempts from one address, or from many new
    addresses, and addresses that failed a while ago.
    """

    def setUp(self):
        self.clock = Clock()
        self.checker = FakeChecker({b"bob": b"right", b"alice": b"hers"}, manual=True)
        self.throttle = throttle.LoginThrottle(self.checker, clock=self.clock, concurrency=1)
        # Checks the test left unfinished: their refusals are not errors.
        self.addCleanup(
            lambda: [r.addErrback(lambda f: None) for _, r in self.checker.pending])

    def attempt(self, user, password, peer, on=None):
        """
        An attempt whose result the test may look at; one it leaves alone
        is consumed.
        """
        on = on or self.throttle
        d = on.requestAvatarId(LoginAttempt(user, password, peer))
        self.addCleanup(d.addErrback, lambda f: None)
        return d

    def runFor(self, seconds, step=0.05):
        """
        Let C{seconds} pass, each check taking C{step} seconds.
        """
        for _ in range(int(seconds / step)):
            if self.checker.pending:
                self.checker.finish()
            self.clock.advance(step)

    def test_burstFromCleanAddressIsOneCheckAtATime(self):
        """
        300 attempts at once from an address without failures run one
        password check at a time, however many checks may run in all.
        """
        self.throttle = throttle.LoginThrottle(self.checker, clock=self.clock, concurrency=8)
        for i in range(300):
            self.attempt(b"bob", b"guess", ATTACKER)
        self.assertEqual(len(self.checker.checks), 1)

    def test_burstChecksAtMostOneASecond(self):
        """
        A burst of 300 attempts from one address gets at most one check a
        second after its first (fewer as its penalty grows).
        """
        for i in range(300):
            self.attempt(b"bob", b"guess", ATTACKER)
        self.runFor(30)
        self.assertLessEqual(len(self.checker.checks), 1 + 30)
        self.assertLessEqual(len(self.checker.checks), 8)

    def test_burstDoesNotDelayOtherAddress(self):
        """
        While 300 attempts of a fresh address wait, a right password from
        another clean address is checked next.
        """
        for i in range(300):
            self.attempt(b"bob", b"guess", ATTACKER)
        d = self.attempt(b"alice", b"hers", USER_HOME)
        self.checker.finish()
        self.assertEqual(self.checker.checks[-1], (b"alice", USER_HOME))
        self.checker.finish()
        self.assertEqual(self.successResultOf(d), b"alice")

    def test_newAddressesBurstDoesNotDelayOtherUser(self):
        """
        The first guesses of 50 new addresses on one user name take one
        hashing slot between them: another user's right password is checked
        at once.
        """
        for i in range(50):
            self.attempt(b"bob", b"guess", "203.0.113.{}".format(i))
        d = self.attempt(b"alice", b"hers", USER_HOME)
        self.assertEqual(self.checker.checks[-1], (b"alice", USER_HOME))
        self.assertEqual(len(self.checker.checks), 2)
        self.checker.finish(-1)
        self.assertEqual(self.successResultOf(d), b"alice")

    def test_cleanCheckNotBehindAttackersHash(self):
        """
        While an attacking address's check holds every slot, a clean
        address's first check runs at once, on the slot kept for it.
        """
        self.checker.manual = False
        for _ in range(2):
            d = self.attempt(b"bob", b"guess", ATTACKER)
            self.clock.pump([0.5] * 10)
        self.checker.manual = True
        self.clock.advance(60)
        self.attempt(b"bob", b"guess", ATTACKER)
        self.assertEqual(len(self.checker.pending), 1)
        d = self.attempt(b"alice", b"hers", USER_HOME)
        self.assertEqual(self.checker.checks[-1], (b"alice", USER_HOME))
        self.checker.finish(-1)
        self.assertEqual(self.successResultOf(d), b"alice")

    def test_rightPasswordsFromOneAddressNotSpaced(self):
        """
        Right passwords from one address (users behind one NAT) give their
        check's token back: the next is not made to wait a second.
        """
        self.checker.manual = False
        self.assertEqual(self.successResultOf(self.attempt(b"bob", b"right", USER_HOME)), b"bob")
        self.assertEqual(
            self.successResultOf(self.attempt(b"alice", b"hers", USER_HOME)), b"alice")

    def test_notCleanAMinuteAfterOneFailure(self):
        """
        An address that failed once two minutes ago is not clean: while its
        user name is under attack, its next guess waits for the name's
        penalty, and has no priority.
        """
        self.checker.manual = False
        d = self.attempt(b"bob", b"guess", "203.0.113.1")
        self.clock.advance(throttle.FAILURE_DELAY)
        self.failureResultOf(d)
        self.clock.advance(2 * throttle.FORGIVE_AFTER)
        for i in range(2, 12):
            self.attempt(b"bob", b"guess", "203.0.113.{}".format(i))
        before = len(self.checker.checks)
        self.attempt(b"bob", b"guess", "203.0.113.1")
        self.clock.advance(1)
        self.assertEqual(len(self.checker.checks), before)
        self.assertFalse(self.throttle.addressClean("203.0.113.1"))

    def test_failedAddressesShareOneGuessPerPenalty(self):
        """
        Twenty addresses that each failed on one name a few minutes ago get,
        together, one guess per penalty period on it, not twenty.
        """
        self.checker.manual = False
        bots = ["203.0.113.{}".format(i) for i in range(20)]
        for bot in bots:
            self.attempt(b"bob", b"guess", bot)
        self.clock.advance(5 * throttle.FORGIVE_AFTER)
        before = len(self.checker.checks)
        for bot in bots:
            self.attempt(b"bob", b"guess", bot)
        self.clock.pump([0.5] * 20)
        self.assertEqual(len(self.checker.checks) - before, 1)
        self.clock.pump([1] * 60)
        self.assertLessEqual(len(self.checker.checks) - before, 3)

    def test_waitingBounded(self):
        """
        At most MAX_WAITING attempts of one address wait; more are refused
        (as a failed login, after the failure delay) without a check.
        """
        attempts = [self.attempt(b"bob", b"guess", ATTACKER)
                    for _ in range(throttle.MAX_WAITING + 11)]
        self.assertEqual(len(self.throttle._turns[ATTACKER].waiting), throttle.MAX_WAITING)
        self.clock.advance(throttle.FAILURE_DELAY)
        for d in attempts[: throttle.MAX_WAITING + 1]:
            self.assertNoResult(d)
        for d in attempts[throttle.MAX_WAITING + 1:]:
            self.failureResultOf(d, credError.UnauthorizedLogin)
        self.assertEqual(len(self.checker.checks), 1)
        for d in attempts:
            d.addErrback(lambda f: None)

    def test_sharedCounts(self):
        """
        Two throttles (two workers, or two servers) sharing their counts
        count one address's failures once: the second is slowed by the
        first's failures, and the checks a second are not doubled.
        """
        self.checker.manual = False
        other = throttle.LoginThrottle(
            self.checker, clock=self.clock, concurrency=1, counts=self.throttle.counts)
        for round in range(4):
            self.attempt(b"bob", b"guess", ATTACKER, on=(self.throttle, other)[round % 2])
            while len(self.checker.checks) <= round:
                self.clock.advance(0.25)
        self.assertGreater(other.addressScore(ATTACKER), 3)
        before = len(self.checker.checks)
        self.attempt(b"bob", b"guess", ATTACKER, on=other)
        self.attempt(b"bob", b"guess", ATTACKER)
        self.clock.advance(0.5)
        self.assertEqual(len(self.checker.checks), before)

    def test_signupLimited(self):
        """
        An address may create SIGNUP_BURST accounts at once, then one every
        SIGNUP_EVERY seconds.
        """
        allowed = [self.successResultOf(self.throttle.signup(ATTACKER))
                   for _ in range(throttle.SIGNUP_BURST + 2)]
        self.assertEqual(allowed, [True] * throttle.SIGNUP_BURST + [False, False])
        self.assertTrue(self.successResultOf(self.throttle.signup(USER_HOME)))
        self.clock.advance(throttle.SIGNUP_EVERY)
        self.assertTrue(self.successResultOf(self.throttle.signup(ATTACKER)))
        self.assertFalse(self.successResultOf(self.throttle.signup(ATTACKER)))

    def test_guardCountsOtherFailures(self):
        """
        A sign-up naming an existing user (run through guard) counts as a
        failed login of that address.
        """
        class Exists(Exception):
            pass

        d = self.throttle.guard(ATTACKER, b"bob", lambda: defer.fail(Exists()), (Exists,))
        self.clock.advance(throttle.FAILURE_DELAY)
        self.failureResultOf(d, Exists)
        self.assertGreater(self.throttle.addressScore(ATTACKER), 0.9)
