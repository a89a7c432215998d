"""
Tests for L{twisted_mail.doors.web.sessions.FileSessions}: web login sessions
shared by the worker processes of one server.
"""

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.doors.web.sessions import FileSessions

SECRET = b"s" * 32


class FileSessionsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000000)
        self.directory = os.path.abspath(self.mktemp())

    def sessions(self, secret=SECRET, **kwargs):
        return FileSessions(self.directory, secret, self.clock, **kwargs)

    def test_sharedBetweenProcesses(self):
        """
        A session made by one worker is known to another, and ended for both when either ends it.
        """
        one, two = self.sessions(), self.sessions()
        token = one.create("bob")
        self.assertIsInstance(token, bytes)
        self.assertEqual(two.user(token), "bob")
        two.end(token)
        self.assertIsNone(one.user(token))

    def test_idleSessionsEnd(self):
        """
        A session unused for the idle time ends; each use keeps it alive.
        """
        sessions = self.sessions(idle=100)
        token = sessions.create("bob")
        self.clock.advance(90)
        self.assertEqual(sessions.user(token), "bob")
        self.clock.advance(90)
        self.assertEqual(sessions.user(token), "bob")
        self.clock.advance(100)
        self.assertIsNone(sessions.user(token))
        self.assertEqual(os.listdir(self.directory), [])

    def test_noTokensOnDisk(self):
        """
        The directory names no token, and a session of an earlier run of the server (another secret) is not found.
        """
        token = self.sessions().create("bob")
        [name] = os.listdir(self.directory)
        self.assertNotIn(token.decode(), name)
        self.assertIsNone(self.sessions(secret=b"t" * 32).user(token))
        self.assertEqual(os.stat(self.directory).st_mode & 0o777, 0o700)

    def test_unknownTokens(self):
        """
        An unknown, empty or non-bytes token is no session.
        """
        sessions = self.sessions()
        for token in (b"nope", b"", None, "text"):
            self.assertIsNone(sessions.user(token))
            sessions.end(token)

    def test_sweepAndLimit(self):
        """
        Making sessions removes idle ones and keeps at most the limit, dropping the least recently used.
        """
        sessions = self.sessions(idle=100, limit=3)
        sessions.sweepEvery = 1
        old = sessions.create("old")
        self.clock.advance(200)
        tokens = [sessions.create("u%d" % (i,)) for i in range(4)]
        self.assertIsNone(sessions.user(old))
        self.assertLessEqual(len(os.listdir(self.directory)), 3)
        self.assertEqual(sessions.user(tokens[-1]), "u3")


class _QueuedPool:
    """
    A thread pool that holds its jobs until the test runs them.
    """

    def __init__(self):
        self.jobs = []

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.jobs.append((onResult, f, args, kwargs))

    def runAll(self):
        jobs, self.jobs = self.jobs, []
        for onResult, f, args, kwargs in jobs:
            onResult(True, f(*args, **kwargs))


class _ReactorWithPool(Clock):
    def __init__(self):
        Clock.__init__(self)
        self.pool = _QueuedPool()

    def getThreadPool(self):
        return self.pool

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class SweepInThreadTests(SynchronousTestCase):
    def test_sweepInThreadPool(self):
        """
        With a reactor, the sweep of the session directory runs in its
        thread pool, never on the reactor: making a session does not go
        through the directory.
        """
        reactor = _ReactorWithPool()
        reactor.advance(1000000)
        directory = os.path.abspath(self.mktemp())
        sessions = FileSessions(directory, SECRET, reactor, idle=100)
        sessions.sweepEvery = 1
        sessions.create("old")
        reactor.pool.runAll()
        reactor.advance(200)
        sessions.create("new")
        self.assertEqual(len(os.listdir(directory)), 2)
        self.assertEqual(len(reactor.pool.jobs), 1)
        reactor.pool.runAll()
        self.assertEqual(len(os.listdir(directory)), 1)
