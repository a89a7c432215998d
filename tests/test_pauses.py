"""
What keeps the server's answers quick while mail pours in: a delivered
message costs the garbage collector's full collections (which stop every
thread) one object to walk, and a small spool is listed without a thread
hop (LSTU, benchmarks/load.py's probe).
"""

import gc
import tempfile

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.service import tap
from twisted_mail.stores.base import AtOnce
from twisted_mail.stores.spool import store as spool
from twisted_mail.stores.spool.indexer import SynchronousReactor, resultOf
from twisted_mail.stores.spool.store import SpoolStore


def _tracked():
    gc.collect()
    return len(gc.get_objects())


class TrackedObjectsTests(SynchronousTestCase):
    def test_oneTrackedObjectPerMessage(self):
        """Each message a mailbox holds adds one object for the collector to walk (its entry), not three (its entry, its own empty flag set and a list for its content key)."""
        path = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, path, True)
        store = SpoolStore(path, reactor=SynchronousReactor(), journal=True, searchIndex=False)
        self.addCleanup(store.close)
        resultOf(store.addUser("bob"))
        resultOf(store.deliverMessage("x@example.com", "bob", b"Subject: 0\n\nfirst\n"))
        before = _tracked()
        count = 2000
        for n in range(count):
            resultOf(store.deliverMessage(
                "x@example.com", "bob", b"Subject: hi\n\nmessage %d\n" % (n,)))
        added = _tracked() - before
        self.assertGreater(added, count * 0.8)  # the entries themselves
        self.assertLess(added, count * 1.2)

    def test_readsShareFlagSets(self):
        """Messages marked \\Seen (as reading them does) share one flag set."""
        path = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, path, True)
        store = SpoolStore(path, reactor=SynchronousReactor(), searchIndex=False)
        self.addCleanup(store.close)
        resultOf(store.addUser("bob"))
        for n in range(5):
            resultOf(store.deliverMessage("x@example.com", "bob", b"Subject: %d\n\nx\n" % (n,)))
        folder = resultOf(store.openFolder("bob", "INBOX"))
        ids = [summary.id for summary in resultOf(folder.listMessages()).messages]
        resultOf(folder.markSeen(ids))
        resultOf(folder.fetchMessages(ids))
        folder.close()
        mbox = store._mailbox("bob").mbox
        with mbox.locked():
            sets = {id(e.flags) for e in mbox.entries}
            flags = {e.flags for e in mbox.entries}
        self.assertEqual(flags, {frozenset(["\\Seen"])})
        self.assertEqual(len(sets), 1)


class _IdlePool:
    """
    A thread pool that never runs its work (every thread busy).
    """

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        pass


class _BusyPoolReactor(AtOnce, Clock):
    def getThreadPool(self):
        return _IdlePool()


class ListingTests(SynchronousTestCase):
    def test_smallSpoolListedAtOnce(self):
        """Once a small spool has been listed, listing it needs no thread: LSTU answers while every thread of the pool is busy."""
        path = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, path, True)
        store = SpoolStore(path, reactor=SynchronousReactor(), searchIndex=False)
        self.addCleanup(store.close)
        for user in ("bob", "alice"):
            resultOf(store.addUser(user))
        self.assertEqual(resultOf(store.listUsers()), ["alice", "bob"])
        store._reactor = _BusyPoolReactor()
        self.assertEqual(resultOf(store.listUsers()), ["alice", "bob"])

    def test_largeSpoolListedInAThread(self):
        """A spool whose directory holds more than INLINE_LISTING entries is listed in a thread."""
        path = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, path, True)
        self.patch(spool, "INLINE_LISTING", 3)
        store = SpoolStore(path, reactor=SynchronousReactor(), searchIndex=False)
        self.addCleanup(store.close)
        for user in ("a", "b", "c", "d"):
            resultOf(store.addUser(user))
        self.assertEqual(resultOf(store.listUsers()), ["a", "b", "c", "d"])
        store._reactor = _BusyPoolReactor()
        self.assertNoResult(store.listUsers())


class CollectorTests(SynchronousTestCase):
    def setUp(self):
        thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *thresholds)
        self.addCleanup(gc.unfreeze)

    def test_startupSetAside(self):
        """What exists once the server runs is set aside from the collector's full collections."""
        tap.tuneCollector(Clock()).stop()
        self.assertGreater(gc.get_freeze_count(), 0)

    def test_fullCollectionsOnATimer(self):
        """Full collections run once a minute, not whenever the heap grew: cyclic garbage that lived through the young collections is collected at the next one."""
        clock = Clock()
        calls = tap.tuneCollector(clock)
        self.addCleanup(calls.stop)

        class Cycle:
            pass

        gc.collect()
        # A cycle that outlives the young generations: in the oldest.
        garbage = Cycle()
        garbage.me = garbage
        gc.collect(1)
        gc.collect(1)
        import weakref
        gone = weakref.ref(garbage)
        del garbage
        # Many young collections, and a heap grown by far more than a
        # quarter: before, a full collection would have run.
        kept = []
        for _ in range(100):
            kept.extend(Cycle() for _ in range(1000))
        self.assertIsNotNone(gone())
        clock.advance(tap.FULL_COLLECTION_INTERVAL)
        self.assertIsNone(gone())

    def test_stoppingPutsTheCollectorBack(self):
        """The server's collector service tunes the collector while it runs and puts it back as it was when it stops."""
        before = gc.get_threshold()
        collector = tap._CollectorService(Clock())
        collector.startService()
        self.assertEqual(gc.get_threshold()[2], 2 ** 30)
        collector.stopService()
        self.assertEqual((gc.get_threshold(), gc.get_freeze_count()), (before, 0))
