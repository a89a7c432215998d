"""
State shared by the processes of one server and the servers of one
database (issue 23, items 8 and 9): the login throttle's counts in the
spool (L{SpoolCounts}, for C{--workers}) and in the database
(L{DatabaseCounts}), and the web's login sessions in the database
(L{DatabaseSessions}).
"""

import os

from twisted.cred import error as credError
from twisted.trial.unittest import SynchronousTestCase

from tests import pgserver
from tests.test_store import SynchronousThreads
from tests.test_throttle import ATTACKER, FakeChecker
from tests.webclient import WebClient
from twisted_mail.doors.web import makeWebFactory
from twisted_mail.doors.web.policy import MAX_SESSIONS, SESSION_IDLE
from twisted_mail.logins import portal as auth
from twisted_mail.logins import throttle
from twisted_mail.logins.portal import LoginAttempt
from twisted_mail.stores.spool.counts import SpoolCounts

skip = pgserver.skipReason()


class SharedCountsMixin:
    """
    Two throttles (two workers, or two servers) on one store of counts.
    """

    def makeCounts(self):
        raise NotImplementedError()

    def setUp(self):
        self.clock = SynchronousThreads()
        self.clock.advance(1e6)  # a wall-clock-like time
        self.checker = FakeChecker({b"bob": b"right"})
        self.throttles = [
            throttle.LoginThrottle(self.checker, clock=self.clock, concurrency=1,
                                   counts=self.makeCounts())
            for _ in range(2)
        ]

    def attempt(self, which, password=b"guess"):
        d = self.throttles[which].requestAvatarId(LoginAttempt(b"bob", password, ATTACKER))
        self.addCleanup(d.addErrback, lambda f: None)
        return d

    def test_oneCheckASecondBetweenTwo(self):
        """
        Attempts from one address on two throttles at once get one check,
        not one each.
        """
        self.attempt(0)
        self.attempt(1)
        self.assertEqual(len(self.checker.checks), 1)
        self.clock.advance(throttle.CHECK_INTERVAL)
        self.assertEqual(len(self.checker.checks), 2)

    def test_penaltyShared(self):
        """
        Failures counted by one throttle slow the address on the other.
        """
        failed = []
        for round in range(4):
            failed.append(self.attempt(0))
            while len(self.checker.checks) <= round:
                self.clock.advance(0.25)
        before = len(self.checker.checks)
        d = self.attempt(1, b"right")
        self.clock.advance(0.5)
        self.assertEqual(len(self.checker.checks), before)
        self.clock.pump([0.5] * 20)
        self.assertEqual(self.successResultOf(d), b"bob")
        for d in failed:
            self.failureResultOf(d, credError.UnauthorizedLogin)


class SpoolCountsTests(SharedCountsMixin, SynchronousTestCase):
    def makeCounts(self):
        if not hasattr(self, "directory"):
            self.directory = os.path.join(self.mktemp(), SpoolCounts.directoryName)
        return SpoolCounts(self.directory, self.clock)

    def test_bounded(self):
        """
        Expired rows are forgotten, and at most C{limit} rows are kept.
        """
        counts = SpoolCounts(self.directory, self.clock, limit=10, sweepEvery=50)
        for i in range(49):
            counts.update(["a:%d" % i], 0.0, lambda rows, i=i: rows.update(
                {"a:%d" % i: (1e9 + i, 1.0, 0.0, 0.0, 0.0)}))
        counts.update(["x"], 2e9, lambda rows: None)
        self.assertEqual(sorted(os.listdir(self.directory)), ["lock"])
        for i in range(49):
            counts.update(["a:%d" % i], 0.0, lambda rows, i=i: rows.update(
                {"a:%d" % i: (1e9 + i, 1.0, 0.0, 0.0, 0.0)}))
        counts.update(["x"], 0.0, lambda rows: None)
        self.assertEqual(len(os.listdir(self.directory)), 11)


class DatabaseCountsTests(SharedCountsMixin, SynchronousTestCase):
    skip = skip

    def makeCounts(self):
        from tests.test_pgstore import makePostgresStore
        from twisted_mail.stores.postgres.shared import DatabaseCounts

        if not hasattr(self, "url"):
            self.url = pgserver.freshDatabase()
        return DatabaseCounts(makePostgresStore(self, self.url))


class DatabaseSessionsTests(SynchronousTestCase):
    """
    Web sessions kept in the database: a login on one server is honoured
    by another on the same database.
    """

    skip = skip

    def setUp(self):
        from tests.test_pgstore import makePostgresStore
        from twisted_mail.stores.postgres.shared import DatabaseSessions

        self.clock = SynchronousThreads()
        self.clock.advance(1e6)
        url = pgserver.freshDatabase()
        self.stores = [makePostgresStore(self, url) for _ in range(2)]
        self.successResultOf(self.stores[0].addUser("alice"))
        self.sessions = [
            DatabaseSessions(store, self.clock, SESSION_IDLE, MAX_SESSIONS)
            for store in self.stores
        ]

    def test_sharedAndEnded(self):
        """
        A session made on one server is found on the other; ended on the
        other, it is gone on both; an unknown token is no session.
        """
        token = self.successResultOf(self.sessions[0].create("alice"))
        self.assertEqual(self.successResultOf(self.sessions[1].user(token)), "alice")
        self.assertIsNone(self.successResultOf(self.sessions[1].user(b"forged")))
        self.successResultOf(self.sessions[1].end(token))
        self.assertIsNone(self.successResultOf(self.sessions[0].user(token)))

    def test_idle(self):
        """
        A session unused for SESSION_IDLE seconds is over; each use keeps
        it alive.
        """
        token = self.successResultOf(self.sessions[0].create("alice"))
        self.clock.advance(SESSION_IDLE - 1)
        self.assertEqual(self.successResultOf(self.sessions[1].user(token)), "alice")
        self.clock.advance(SESSION_IDLE - 1)
        self.assertEqual(self.successResultOf(self.sessions[0].user(token)), "alice")
        self.clock.advance(SESSION_IDLE)
        self.assertIsNone(self.successResultOf(self.sessions[1].user(token)))

    def test_webLoginOnTwoServers(self):
        """
        Through the web API: log in on one server, read the mailbox on the
        other with the same cookie, log out there, and the first refuses
        the cookie.
        """
        passwords = auth.PasswordFile(self.mktemp())
        passwords.setPassword("alice", "wonderland")
        factories = []
        for store, sessions in zip(self.stores, self.sessions):
            portal = auth.makePortal(passwords, reactor=self.clock, store=store)
            factory = makeWebFactory(
                store, "localhost", portal=portal, passwordFile=passwords,
                reactor=self.clock, sessions=sessions)
            factory.doStart()
            self.addCleanup(factory.doStop)
            factories.append(factory)
        first, second = WebClient(factories[0]), WebClient(factories[1])
        response = first.request("POST", "/api/v1/login",
                                 json_={"user": "alice", "password": "wonderland"})
        self.assertEqual(response.code, 200)
        second.cookies = dict(first.cookies)
        listing = second.request("GET", "/api/v1/users/alice/messages")
        self.assertEqual(listing.code, 200)
        self.assertEqual(second.request("GET", "/api/v1/session").json()["user"], "alice")
        self.assertEqual(second.request("POST", "/api/v1/logout").code, 204)
        self.assertEqual(
            first.request("GET", "/api/v1/users/alice/messages").code, 401)


class _Listeners:
    """
    Opens nothing: keeps each door's factory (as a worker's listeners
    would adopt the supervisor's sockets).
    """

    def __init__(self):
        self.factories = {}

    def listen(self, option, description, factory):
        from twisted.application import service

        self.factories[option] = factory
        return service.Service()


class WiringMixin:
    """
    The service layer picks where the counts and the sessions live.
    """

    def build(self, *argv):
        from twisted.internet.testing import MemoryReactor

        from twisted_mail.service import tap

        passwords = self.mktemp()
        auth.PasswordFile(passwords).setPassword("alice", "pw")
        options = tap.Options()
        options.parseOptions(list(argv) + [
            "--passwords", passwords, "--web", "tcp:9080:interface=127.0.0.1"])
        listeners = _Listeners()
        tap.makeService(options, reactor=MemoryReactor(), listeners=listeners)
        line = listeners.factories["listen"]
        self.addCleanup(getattr(line.store, "close", lambda: None))
        api = listeners.factories["web"].resource.children[b"api"]
        return line.portal.throttle.counts, api.sessions


class SpoolWiringTests(WiringMixin, SynchronousTestCase):
    def test_workersShareThroughTheSpool(self):
        """
        With --workers, the throttle's counts and the web sessions are in
        the spool; with one process, in memory.
        """
        from twisted_mail.doors.web.sessions import FileSessions

        spool = self.mktemp()
        counts, sessions = self.build("--spool", spool, "--workers", "2")
        self.assertIsInstance(counts, SpoolCounts)
        self.assertEqual(counts.directory, os.path.join(spool, ".simplemail-logins"))
        self.assertIsInstance(sessions, FileSessions)
        counts, sessions = self.build("--spool", self.mktemp())
        self.assertIsInstance(counts, throttle.MemoryCounts)
        self.assertNotIsInstance(sessions, FileSessions)


class DatabaseWiringTests(WiringMixin, SynchronousTestCase):
    skip = skip

    def test_serversShareThroughTheDatabase(self):
        """
        With --database, the throttle's counts and the web sessions are in
        the database.
        """
        from twisted_mail.stores.postgres.shared import DatabaseCounts, DatabaseSessions

        counts, sessions = self.build("--database", pgserver.freshDatabase())
        self.assertIsInstance(counts, DatabaseCounts)
        self.assertIsInstance(sessions, DatabaseSessions)
