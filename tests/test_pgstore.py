"""
The PostgreSQL store against a real PostgreSQL server (tests/pgserver.py):
the store contract, its schema, group commit, reconnection after a lost
connection, and new-mail announcements across store objects (as across
servers).
"""

import contextlib
import os
import sys
import threading
import time

from twisted.internet import defer, reactor, threads
from twisted.internet.testing import MemoryReactor
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import pgserver

#: How long to wait for an event before calling the store broken: a bound
#: for a hung test only, never a measure of speed.
EVENT_LIMIT = 120
from tests.test_mailboxview import MailboxViewContractMixin
from tests.test_store import StoreContractMixin, SynchronousThreads
from twisted_mail.service import tap
from twisted_mail import errors
from twisted_mail.mail.query import parseQuery

skip = pgserver.skipReason()

if skip is None:
    import psycopg

    from twisted_mail.stores.postgres import sql as pgsql
    from twisted_mail.stores.postgres import listener as pglistener, store as pgstore


def makePostgresStore(testCase, url, **kwargs):
    """
    A L{PostgresStore} on C{url} that runs its database work synchronously
    (on the test's thread, with a real connection), closed at the end of
    the test.
    """
    store = pgstore.PostgresStore(url, reactor=SynchronousThreads(), **kwargs)
    store.checkNow()
    testCase.addCleanup(store.close)
    return store


class PostgresStoreContractTests(StoreContractMixin, SynchronousTestCase):
    """
    The store contract, run against PostgreSQL.
    """

    skip = skip

    def setUp(self):
        self.url = pgserver.freshDatabase()
        StoreContractMixin.setUp(self)

    def makeStore(self, **kwargs):
        return makePostgresStore(self, self.url, **kwargs)

    def sql(self, statement, *params):
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else None

    def test_deliveryIndexedForSearch(self):
        """
        A delivered message is indexed for search right after its
        transaction commits, before anyone searches (the first search after
        new mail does not pay for it).
        """
        self.addUsers("bob")
        plan = self.ok(self.store.deliver("alice", "bob", b"the plan\n"))
        self.ok(self.store.deliver("alice", "bob", b"lunch at noon\n"))
        self.assertEqual(self.sql("SELECT count(*) FROM search_docs WHERE userid = 'bob'"),
                         [(2,)])
        found = self.ok(self.store.search("bob", parseQuery("plan")))
        self.assertEqual([s.id for s in found.messages], [plan])

    def test_schemaVersioned(self):
        """
        The schema is created at start and its version recorded; starting
        again upgrades nothing and keeps the data.
        """
        self.addUsers("bob")
        self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        self.assertEqual(self.sql("SELECT max(version) FROM schema_version"),
                         [(pgsql.SCHEMA_VERSION,)])
        again = self.makeStore()
        self.assertEqual(self.ok(again.openMailbox("bob")).count, 1)
        self.assertEqual(len(self.sql("SELECT * FROM schema_version")),
                         pgsql.SCHEMA_VERSION)

    def test_newerSchemaRefused(self):
        """
        A database whose schema is newer than this code is refused at start
        with a one-line reason.
        """
        self.sql("INSERT INTO schema_version (version) VALUES (%s)",
                 pgsql.SCHEMA_VERSION + 1)
        self.addCleanup(self.sql, "DELETE FROM schema_version WHERE version > %s",
                        pgsql.SCHEMA_VERSION)
        store = pgstore.PostgresStore(self.url, reactor=SynchronousThreads())
        exc = self.assertRaises(pgsql.DatabaseUnavailable, store.checkNow)
        self.assertIn("newer", str(exc))
        self.assertNotIn("\n", str(exc))

    def test_unreachableAtStart(self):
        """
        A database that cannot be reached is a one-line error at start.
        """
        store = pgstore.PostgresStore("host=/nonexistent port=1 dbname=x connect_timeout=2",
                                      reactor=SynchronousThreads())
        exc = self.assertRaises(pgsql.DatabaseUnavailable, store.checkNow)
        self.assertNotIn("\n", str(exc).strip())

    def test_stableIds(self):
        """
        Ids are URL-safe, follow delivery order, survive deletes of other
        messages and new stores (a restart), and are never given again.
        """
        self.addUsers("bob")
        for i in range(3):
            self.ok(self.store.deliver("alice", "bob", b"m%d\n" % i))
        session = self.session("bob")
        ids = [m.id for m in self.ok(session.listMessages()).messages]
        self.assertEqual(len(set(ids)), 3)
        for msgid in ids:
            self.assertRegex(msgid, r"\A[A-Za-z0-9_-]{1,64}\Z")
        self.assertEqual(self.ok(session.deleteMessages([ids[1]])), [ids[1]])
        self.ok(self.store.deliver("alice", "bob", b"m3\n"))
        again = self.ok(self.makeStore().openMailbox("bob"))
        after = [m.id for m in self.ok(again.listMessages()).messages]
        self.assertEqual(after[:2], [ids[0], ids[2]])
        self.assertNotIn(after[2], ids)
        self.assertEqual(again.count, 3)

    def test_deletesCountedOff(self):
        """
        The message count a session starts with follows deliveries and
        deletes by every door.
        """
        self.addUsers("bob")
        for i in range(5):
            self.ok(self.store.deliver("alice", "bob", b"m%d\n" % i))
        session = self.session("bob")
        ids = [m.id for m in self.ok(session.listMessages()).messages]
        self.ok(session.readMessage())
        self.ok(session.deleteMessage())
        self.ok(session.deleteMessages(ids[3:] + ids[:1] + ["nope", "99999999"]))
        self.assertEqual(self.session("bob").count, 2)
        self.assertEqual(self.ok(session.listMessages()).total, 2)

    def cutAtCommit(self, commits):
        """
        Make the next delivery transaction's connection fail as its COMMIT
        is sent: after committing (C{commits}) or without committing.
        """
        store = self.store
        real = store._connection
        calls = []

        class Cut:
            def __init__(self, conn):
                self._conn = conn

            def __getattr__(self, name):
                return getattr(self._conn, name)

            @contextlib.contextmanager
            def transaction(self):
                with self._conn.transaction() as tx:
                    yield tx
                    if not commits:
                        raise psycopg.OperationalError("server closed the connection")
                raise psycopg.OperationalError("server closed the connection")

        def connection():
            conn = real()
            calls.append(conn)
            return Cut(conn) if len(calls) == 1 else conn

        self.patch(store, "_connection", connection)

    def test_commitCutOffButDone(self):
        """
        A connection lost as a delivery's COMMIT went through: the store
        finds the message on a new connection and acknowledges it, once.
        """
        self.addUsers("bob")
        self.cutAtCommit(commits=True)
        self.ok(self.store.deliver("alice", "bob", b"in doubt\n"))
        self.assertEqual(self.sql("SELECT count(*) FROM messages"), [(1,)])

    def test_commitCutOffUndone(self):
        """
        A connection lost before a delivery's COMMIT went through: temporary
        failure, and nothing stored.
        """
        self.addUsers("bob")
        self.cutAtCommit(commits=False)
        self.fails(self.store.deliver("alice", "bob", b"lost\n"), errors.TemporaryFailure)
        self.assertEqual(self.sql("SELECT count(*) FROM messages"), [(0,)])

    def test_summariesStored(self):
        """
        A listing gives the summary read at delivery, without the message
        being parsed again.
        """
        self.addUsers("bob")
        message = (b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\nTo: bob@localhost\n"
                   b"Subject: hello\tthere\n\nSome text\n")
        self.ok(self.store.deliverMessage("j@example.org", "bob", message))
        self.sql("UPDATE messages SET body = 'garbage'")
        (summary,) = self.ok(self.session("bob").listMessages()).messages
        self.assertEqual(summary.sender, "J\u00fcrgen <j@example.org>")
        self.assertEqual(summary.subject, "hello there")
        self.assertEqual(summary.snippet, "Some text")
        self.assertEqual(summary.size, len(message) + message.count(b"\n"))


class PayloadTests(SynchronousTestCase):
    """
    The NOTIFY payloads that tell other servers of new mail.
    """

    skip = skip

    def test_roundTrip(self):
        """
        A batch's pairs come back from its payloads, split so that each
        stays under PostgreSQL's limit.
        """
        pairs = [("user%d" % i, 10 ** 12 + i) for i in range(2000)]
        payloads = list(pgsql._payloads(
            "origin", ["{} {}".format(u, s) for u, s in pairs]))
        self.assertGreater(len(payloads), 1)
        back = []
        for payload in payloads:
            self.assertLess(len(payload.encode("utf-8")), 8000)
            origin, got = pgsql._parsePayload(payload)
            self.assertEqual(origin, "origin")
            back.extend(got)
        self.assertEqual(back, pairs)

    def test_garbageIgnored(self):
        """
        A payload with lines that are not pairs (another program's NOTIFY
        on the channel) yields only the pairs it holds.
        """
        self.assertEqual(pgsql._parsePayload("o\nbob 12\nnonsense\nbob x"),
                         ("o", [("bob", 12)]))


class _ThreadedStore:
    """
    Helpers for tests with a real reactor and a real thread pool.
    """

    def makeThreadedStore(self, url):
        pool = pgstore.databaseThreadPool(4)
        pool.start()
        store = pgstore.PostgresStore(url, reactor=reactor, threadpool=pool)
        store.checkNow()

        def stop():
            pool.stop()
            store.close()

        self.addCleanup(stop)
        return store

    def whenListening(self, *stores):
        """
        A Deferred that fires once each store's notification thread
        listens (the limit only ends a hung test).
        """
        def wait():
            for store in stores:
                if not store.listening.wait(EVENT_LIMIT):
                    raise AssertionError("the notification thread never listened")

        return threads.deferToThread(wait)

    @defer.inlineCallbacks
    def waitUntil(self, condition, limit=EVENT_LIMIT):
        """
        Fire once C{condition()} is true (checked every 20 ms); fail after
        C{limit} seconds, a bound for a hung test only.
        """
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("still waiting after {} s".format(limit))
            yield threads.deferToThread(time.sleep, 0.02)

    def waitForLockWait(self):
        """
        Fire once some session of the test database waits for a lock.
        """
        def wait():
            deadline = time.monotonic() + EVENT_LIMIT
            with psycopg.connect(self.url, autocommit=True) as conn:
                query = "SELECT count(*) FROM pg_locks WHERE NOT granted"
                while not conn.execute(query).fetchone()[0]:
                    if time.monotonic() > deadline:
                        raise AssertionError("no session waits for a lock")
                    time.sleep(0.02)

        return threads.deferToThread(wait)


class PostgresStoreThreadedTests(_ThreadedStore, TestCase):
    """
    The PostgreSQL store with real threads: group commit, announcements
    across stores, and what a lost connection does.
    """

    skip = skip
    timeout = 2 * EVENT_LIMIT

    def setUp(self):
        self.url = pgserver.freshDatabase()
        self.store = self.makeThreadedStore(self.url)
        return self.store.addUser("bob")

    @defer.inlineCallbacks
    def test_groupCommit(self):
        """
        Deliveries queued together are stored together, each acknowledged,
        in far fewer transactions than messages.
        """
        transactions = []
        real = pgstore.insertRows

        def counting(conn, rows, **kwargs):
            transactions.append(len(rows))
            return real(conn, rows, **kwargs)

        self.patch(pgstore, "insertRows", counting)
        yield defer.gatherResults(
            [self.store.deliver("alice", "bob", b"m%d\n" % i) for i in range(50)])
        session = yield self.store.openMailbox("bob")
        self.assertEqual(session.count, 50)
        self.assertEqual(sum(transactions), 50)
        self.assertLess(len(transactions), 10)
        self.assertLessEqual(max(transactions), pgstore.BATCH_MESSAGES)
        listing = yield session.listMessages()
        self.assertEqual([m.snippet for m in listing.messages],
                         ["m%d" % i for i in range(50)])

    @defer.inlineCallbacks
    def test_batchesBounded(self):
        """
        A transaction takes at most so many messages; the rest follow in
        the next ones, every delivery acknowledged.
        """
        self.patch(pgstore, "BATCH_MESSAGES", 7)
        transactions = []
        real = pgstore.insertRows

        def counting(conn, rows, **kwargs):
            transactions.append(len(rows))
            return real(conn, rows, **kwargs)

        self.patch(pgstore, "insertRows", counting)
        yield defer.gatherResults(
            [self.store.deliver("alice", "bob", b"m%d\n" % i) for i in range(30)])
        self.assertEqual(sum(transactions), 30)
        self.assertLessEqual(max(transactions), 7)
        session = yield self.store.openMailbox("bob")
        self.assertEqual(session.count, 30)

    @defer.inlineCallbacks
    def test_announcedAcrossStores(self):
        """
        A delivery through one store object (one server) is announced to a
        subscriber of another, once; its own subscribers hear of it at
        once.
        """
        other = self.makeThreadedStore(self.url)
        other.startListening()
        self.store.startListening()
        heard, local = [], []
        got = {}

        def listener(summary):
            heard.append(summary)
            d = got.pop(summary.snippet, None)
            if d is not None:
                d.callback(None)

        other.subscribe("bob", listener)
        self.store.subscribe("bob", local.append)
        yield self.whenListening(other, self.store)
        news = got["news"] = defer.Deferred()
        yield self.store.deliver("alice", "bob", b"news\n")
        self.assertEqual([s.snippet for s in local], ["news"])
        yield news.addTimeout(EVENT_LIMIT, reactor)
        # "Once": a marker delivered after it is announced too, in order;
        # a second announcement of "news" would come before it.
        marker = got["marker"] = defer.Deferred()
        yield self.store.deliver("alice", "bob", b"marker\n")
        yield marker.addTimeout(EVENT_LIMIT, reactor)
        self.assertEqual([s.snippet for s in heard], ["news", "marker"])
        self.assertEqual([s.snippet for s in local], ["news", "marker"])
        self.assertEqual(heard[0].id, local[0].id)

    @defer.inlineCallbacks
    def test_changesSentTogether(self):
        """
        Changes another process announces in one transaction (their
        notifications arrive in one packet) all reach a watcher: the
        listener never leaves a packet half read.
        """
        self.store.startListening()
        events = []
        self.store.watch("bob", events.append)
        yield self.whenListening(self.store)

        def announce():
            with psycopg.connect(self.url, autocommit=True) as conn:
                with conn.transaction():
                    for kind in ("folders", "expunge"):
                        pgsql.notifyChanges(conn, "another process", [
                            {"u": "bob", "k": kind, "f": None, "m": "m1", "uid": 1}])

        yield threads.deferToThread(announce)
        yield self.waitUntil(lambda: {"folders", "expunge"} <= {e.kind for e in events})

    @defer.inlineCallbacks
    def test_changesAcrossStores(self):
        """
        Flag changes, moves and folder changes through one store object (one
        server) reach a watcher of another within 2 seconds.
        """
        other = self.makeThreadedStore(self.url)
        other.startListening()
        self.store.startListening()
        events = []
        wanted = defer.Deferred()

        def listener(event):
            events.append(event)
            kinds = {e.kind for e in events}
            if {"flags", "expunge", "folders"} <= kinds and not wanted.called:
                wanted.callback(None)

        other.watch("bob", listener)
        yield self.whenListening(other, self.store)
        msgid = yield self.store.deliver("alice", "bob", b"news\n")
        session = yield self.store.openMailbox("bob")
        yield session.setFlags([msgid], add=["\\Flagged"])
        yield session.moveMessages([msgid], "Archive")
        yield self.store.createFolder("bob", "Work")
        # Waited for generously: how soon is not timed here (issue 23, item 17).
        yield wanted.addTimeout(120, reactor)
        flagged = [e for e in events if e.kind == "flags"]
        self.assertEqual((flagged[0].msgid, flagged[0].summary.flags),
                         (msgid, frozenset(["\\Flagged"])))
        self.assertIn(("expunge", "INBOX", msgid),
                      [(e.kind, e.folder, e.msgid) for e in events])
        self.assertIn(("message", "Archive", msgid),
                      [(e.kind, e.folder, e.msgid) for e in events])

    @defer.inlineCallbacks
    def test_commitsInIdOrder(self):
        """
        While another server's delivery to a mailbox is uncommitted, a
        delivery to that mailbox waits for it: ids commit in order, so a
        reader's cursor never passes a message that commits later.
        """
        other = pgsql.connect(self.url)
        self.addCleanup(other.close)
        row = pgsql.prepareRow(
            pgsql._Delivery("bob", "x@localhost", 0, [b"Subject: first\n\nfirst\n"]),
            1 << 20)
        other.execute("BEGIN")
        (first,) = pgstore.insertRows(other, [row], origin="elsewhere")
        d = self.store.deliver("alice", "bob", b"second\n")
        # Positive marker: the delivery is seen waiting for a lock held by
        # the uncommitted transaction (not merely not done yet).
        yield self.waitForLockWait()
        self.assertNoResult(d)
        session = yield self.store.openMailbox("bob")
        with self.assertRaises(errors.NoMoreMail):
            yield session.readMessage()
        yield threads.deferToThread(other.execute, "COMMIT")
        yield d
        texts = [(yield session.readMessage()), (yield session.readMessage())]
        self.assertEqual([t.split(b"\n\n", 1)[1] for t in texts], [b"first\n", b"second\n"])
        listing = yield session.listMessages()
        self.assertEqual(listing.messages[0].id, str(first))

    @defer.inlineCallbacks
    def test_announcementsSurviveLostConnection(self):
        """
        When the connection that listens for other servers' mail is cut,
        it reconnects, and what came meanwhile is announced once; the
        store's own deliveries are not announced twice.
        """
        other = self.makeThreadedStore(self.url)
        other.startListening()
        self.store.startListening()
        heard, local = [], []
        other.subscribe("bob", heard.append)
        self.store.subscribe("bob", local.append)
        yield self.whenListening(other, self.store)

        def terminate():
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'simplemail-listen'")

        yield threads.deferToThread(terminate)
        yield self.store.deliver("alice", "bob", b"meanwhile\n")
        yield other.deliver("alice", "bob", b"own\n")
        yield self.waitUntil(lambda: len(heard) >= 2 and len(local) >= 2)
        # "Once": a marker delivered now is announced after anything the
        # reconnection replays; then nothing was announced twice.
        yield self.store.deliver("alice", "bob", b"marker\n")
        yield self.waitUntil(lambda: "marker" in [s.snippet for s in heard])
        self.assertEqual(sorted(s.snippet for s in heard), ["marker", "meanwhile", "own"])
        self.assertEqual(sorted(s.snippet for s in local), ["marker", "meanwhile", "own"])

    @defer.inlineCallbacks
    def test_changesSurviveLostConnection(self):
        """
        Flag changes and folder changes made while another server's
        notification connection is lost reach that server's watchers once
        it is back (from the change log), and once only.
        """
        other = self.makeThreadedStore(self.url)
        other.startListening()
        self.store.startListening()
        events = []
        other.watch("bob", events.append)
        yield self.whenListening(other, self.store)
        msgid = yield self.store.deliver("alice", "bob", b"news\n")
        yield self.waitUntil(lambda: "message" in [e.kind for e in events])
        # Hold the notification threads' reconnections until the changes
        # are made.
        away, back = threading.Event(), threading.Event()
        original = pglistener.connect

        def connect(url, applicationName="simplemail"):
            if applicationName == "simplemail-listen":
                away.set()
                back.wait(EVENT_LIMIT)
            return original(url, applicationName)

        self.patch(pglistener, "connect", connect)

        def terminate():
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'simplemail-listen'")
            if not away.wait(EVENT_LIMIT):
                raise AssertionError("the notification threads did not reconnect")

        yield threads.deferToThread(terminate)
        session = yield self.store.openMailbox("bob")
        yield session.setFlags([msgid], add=["\\Flagged"])
        yield self.store.createFolder("bob", "Work")
        back.set()
        yield self.waitUntil(lambda: {"flags", "folders"} <= {e.kind for e in events})
        # A marker made now comes after anything the catch-up announced.
        yield self.store.createFolder("bob", "Marker")
        yield self.waitUntil(lambda: [e.kind for e in events].count("folders") >= 2)
        flagged = [e for e in events if e.kind == "flags"]
        self.assertEqual([(e.msgid, e.summary.flags) for e in flagged],
                         [(msgid, frozenset(["\\Flagged"]))])
        self.assertEqual([e.kind for e in events].count("folders"), 2)

    @defer.inlineCallbacks
    def test_lostConnectionTemporaryFailure(self):
        """
        When the database cuts the store's connections, the calls in flight
        fail with TemporaryFailure, and the next ones reconnect; nothing is
        stored twice.
        """
        yield self.store.deliver("alice", "bob", b"before\n")
        session = yield self.store.openMailbox("bob")

        def terminate():
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'simplemail' AND pid <> pg_backend_pid()")

        yield threads.deferToThread(terminate)
        failures = 0
        for _ in range(8):
            try:
                yield self.store.deliver("alice", "bob", b"after\n")
            except errors.TemporaryFailure:
                failures += 1
            else:
                break
        self.assertLessEqual(failures, 4)
        texts = []
        for _ in range(10):
            try:
                texts.append((yield session.readMessage()))
            except errors.TemporaryFailure:
                continue
            except errors.NoMoreMail:
                break
        bodies = [t.split(b"\n\n", 1)[1] for t in texts]
        self.assertEqual(bodies, [b"before\n", b"after\n"])


class PostgresMailboxViewTests(MailboxViewContractMixin, SynchronousTestCase):
    """
    The mailbox view, run against PostgreSQL.
    """

    skip = skip

    def makeStore(self):
        return makePostgresStore(self, pgserver.freshDatabase())


class DatabaseOptionTests(SynchronousTestCase):
    """
    C{twistd simplemail --database URL}.
    """

    skip = skip

    def test_unreachable(self):
        """
        A database that cannot be reached is a one-line usage error, and no
        spool directory is made.
        """
        options = tap.Options()
        exc = self.assertRaises(
            usage.UsageError, options.parseOptions,
            ["--database", "host=/nonexistent port=1 dbname=x", "--spool", "unused"])
        self.assertTrue(str(exc).startswith("cannot use database: "))
        self.assertNotIn("\n", str(exc))
        self.assertFalse(os.path.exists("unused"))

    def test_withoutPsycopg(self):
        """
        Without psycopg, --database says which extra to install.
        """
        real = sys.modules["psycopg"]
        self.addCleanup(sys.modules.__setitem__, "psycopg", real)
        sys.modules["psycopg"] = None
        options = tap.Options()
        exc = self.assertRaises(usage.UsageError, options.parseOptions,
                                ["--database", "dbname=x"])
        self.assertIn(".[postgresql]", str(exc))

    def test_makeService(self):
        """
        With --database, the server's store is the PostgreSQL store, run by
        a service that starts and stops its threads and connections.
        """
        url = pgserver.freshDatabase()
        options = tap.Options()
        options.parseOptions(["--database", url])
        service = tap.makeService(options, reactor=MemoryReactor())
        (owner,) = [c for c in service if isinstance(c, pgstore.DatabaseService)]
        store = owner.store
        self.assertIsInstance(store, pgstore.PostgresStore)
        self.assertEqual(store.url, url)
        listeners = [c for c in service if hasattr(c, "factory")]
        self.assertTrue(listeners)
        self.assertIs(listeners[0].factory.store, store)
        service.startService()
        self.successResultOf(service.stopService())
        self.assertIsNone(store._listenThread)
        self.assertFalse(owner.pool.started)
