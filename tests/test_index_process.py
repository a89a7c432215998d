"""
The spool's indexing process (twisted_mail.stores.spool.indexer): it
catches up the INBOX index of each user named on its input, and the server
falls back to indexing itself when it is not there.
"""

import io
import json
import os
import sqlite3
import tempfile
import time

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_mail.mail.query import parseQuery
from twisted_mail.stores.spool import indexer, indexerprocess
from twisted_mail.stores.spool.index import indexName
from twisted_mail.stores.spool.indexerprocess import IndexerProcess
from twisted_mail.stores.spool.indexing import KICK_DELAY
from twisted_mail.stores.spool.store import SpoolStore


def _spoolWithMail(case, users=("bob",), count=3):
    path = tempfile.mkdtemp()
    case.addCleanup(lambda: __import__("shutil").rmtree(path, ignore_errors=True))
    store = SpoolStore(path, reactor=indexer.SynchronousReactor(), searchIndex=False)
    for user in users:
        indexer.resultOf(store.addUser(user))
        for n in range(count):
            indexer.resultOf(store.deliverMessage(
                "x@example.com", user, "Subject: note {}\n\nlunch on friday\n".format(n).encode()))
    store.close()
    return path


def _deliverMore(path, user, count):
    store = SpoolStore(path, reactor=indexer.SynchronousReactor(), searchIndex=False)
    try:
        for n in range(count):
            indexer.resultOf(store.deliverMessage(
                "x@example.com", user, "Subject: more {}\n\nlunch again\n".format(n).encode()))
    finally:
        store.close()


def _indexed(path, user):
    """
    How many messages the user's index holds (read only: a reader never
    disturbs the process writing it); 0 while it can't be read.
    """
    try:
        db = sqlite3.connect("file:{}?mode=ro".format(os.path.join(path, indexName(user))),
                             uri=True)
    except sqlite3.Error:
        return 0
    try:
        return db.execute("SELECT count(*) FROM msg").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def _runningProcess():
    """
    An L{IndexerProcess} as if its process ran, writing to a list.

    @return: C{(the process, the list of what it wrote)}.
    """
    written = []

    class Transport:
        def write(self, data):
            written.append(data)

    process = IndexerProcess("/nonexistent", None)
    process.alive = True
    process.transport = Transport()
    return process, written


def _serve(path, data):
    """
    Run the indexing process's loop on C{data} as its input, to its end.

    @return: what it wrote on its standard error.
    """
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    err = io.StringIO()
    try:
        indexer.serve(path, r, err)
    finally:
        os.close(r)
    return err.getvalue()


class ServeTests(SynchronousTestCase):
    def test_indexesTheUsersNamed(self):
        """Each user named on the input has their INBOX indexed, once however often named."""
        path = _spoolWithMail(self, users=("bob", "alice"))
        err = _serve(path, b"bob\nbob\nalice\n\nnobody\n")
        self.assertEqual((_indexed(path, "bob"), _indexed(path, "alice")), (3, 3))
        self.assertIn("nobody", err)

    def test_searchFindsWhatItIndexed(self):
        """A server's search answers from what the process indexed, as from its own."""
        path = _spoolWithMail(self)
        _serve(path, b"bob\n")
        store = SpoolStore(path, reactor=indexer.SynchronousReactor())
        self.addCleanup(store.close)
        found = indexer.resultOf(store.search("bob", parseQuery("friday lunch")))
        self.assertEqual(found.total, 3)


class CatchUpTests(SynchronousTestCase):
    def test_catchUpIndexesNewMailOnly(self):
        """A kick's catch-up indexes the mail that arrived; a delete made meanwhile is still right in the next search, which syncs in full."""
        path = _spoolWithMail(self)
        store = SpoolStore(path, reactor=indexer.SynchronousReactor())
        self.addCleanup(store.close)
        index = store._mailbox("bob").index
        indexer.resultOf(index.catchUp())  # the first is a full sync
        self.assertEqual(_indexed(path, "bob"), 3)
        folder = indexer.resultOf(store.openFolder("bob", "INBOX"))
        first = indexer.resultOf(folder.listMessages()).messages[0].id
        indexer.resultOf(folder.deleteMessages([first]))
        folder.close()
        for n in range(2):
            indexer.resultOf(store.deliverMessage(
                "x@example.com", "bob", "Subject: new {}\n\nlunch on friday\n".format(n).encode()))
        indexer.resultOf(index.catchUp())
        # Only the new mail: the deleted message is still in the index.
        self.assertEqual(_indexed(path, "bob"), 5)
        found = indexer.resultOf(store.search("bob", parseQuery("friday lunch")))
        self.assertEqual(found.total, 4)
        self.assertNotIn(first, [s.id for s in found.messages])
        self.assertEqual(_indexed(path, "bob"), 4)

    def test_settledUsersSyncedInFull(self):
        """Once no kick has come for a while, the users caught up are synced in full, so a search has nothing left to do."""
        path = _spoolWithMail(self)
        store = SpoolStore(path, reactor=indexer.SynchronousReactor())
        self.addCleanup(store.close)
        folder = indexer.resultOf(store.openFolder("bob", "INBOX"))
        first = indexer.resultOf(folder.listMessages()).messages[0].id
        indexer.resultOf(folder.deleteMessages([first]))
        folder.close()
        self.patch(indexer, "SETTLE", 0.01)
        r, w = os.pipe()
        os.write(w, b"bob\n")

        def close():
            time.sleep(0.2)
            os.close(w)

        import threading
        closer = threading.Thread(target=close)
        closer.start()
        try:
            indexer.serve(path, r, io.StringIO())
        finally:
            closer.join()
            os.close(r)
        self.assertEqual(_indexed(path, "bob"), 2)


class _Remote:
    """
    An indexing process that keeps the kicks it is given.
    """

    def __init__(self):
        self.kicks = []

    def kick(self, userid, handed=None):
        self.kicks.append((userid, handed))
        return True


def _handOver(case, path, count=3):
    """
    Deliver C{count} messages to bob through the journal of a store whose
    indexing process is a L{_Remote}: the line the server writes for it.
    """
    store = SpoolStore(path, reactor=indexer.SynchronousReactor(), journal=True)
    case.addCleanup(store.close)
    remote = _Remote()
    store._mailbox("bob").index.remote = remote
    for n in range(count):
        indexer.resultOf(store.deliverMessage(
            "x@example.com", "bob", "Subject: new {}\n\nlunch on friday\n".format(n).encode()))
    store._reactor.advance(KICK_DELAY)
    [(userid, handed)] = remote.kicks
    return userid, handed


def _serveLines(path, *lines):
    return _serve(path, b"".join(json.dumps(line).encode() + b"\n" for line in lines))


class HandOverTests(SynchronousTestCase):
    def test_readWithoutTheLocks(self):
        """Deliveries through the journal are handed to the indexing process with where they are; once it has looked at the mailbox, it indexes them while another program holds the mailbox locked, so it never holds up the server's next deliveries."""
        path = _spoolWithMail(self, count=1)
        process = SpoolStore(path, reactor=indexer.SynchronousReactor())
        self.addCleanup(process.close)
        index = process._mailbox("bob").index
        indexer.resultOf(index.catchUp())  # its first look: in full
        userid, handed = _handOver(self, path)
        self.assertEqual((userid, len(handed)), ("bob", 3))
        other = SpoolStore(path, reactor=indexer.SynchronousReactor(), searchIndex=False)
        self.addCleanup(other.close)
        with other._mailbox("bob").mbox.locked():
            started = time.monotonic()
            indexer.resultOf(index.indexHanded(handed))
            took = time.monotonic() - started
        self.assertEqual(_indexed(path, "bob"), 4)
        self.assertLess(took, 5.0)
        store = SpoolStore(path, reactor=indexer.SynchronousReactor())
        self.addCleanup(store.close)
        found = indexer.resultOf(store.search("bob", parseQuery("friday lunch")))
        self.assertEqual(found.total, 4)

    def test_deletedMeanwhileNotFound(self):
        """A message deleted after its delivery was handed over, and before the process indexed it, is not found by a search, even one that had already synced the index."""
        path = _spoolWithMail(self, count=1)
        process = SpoolStore(path, reactor=indexer.SynchronousReactor())
        self.addCleanup(process.close)
        index = process._mailbox("bob").index
        indexer.resultOf(index.catchUp())
        userid, handed = _handOver(self, path)
        store = SpoolStore(path, reactor=indexer.SynchronousReactor())
        self.addCleanup(store.close)
        folder = indexer.resultOf(store.openFolder("bob", "INBOX"))
        gone = handed[0][3]
        indexer.resultOf(folder.deleteMessages([gone]))
        # A search syncs the index (and records the mailbox's stamp)...
        self.assertEqual(indexer.resultOf(store.search("bob", parseQuery("friday"))).total, 3)
        # ...then the process indexes the hand-over, deleted message and all.
        indexer.resultOf(index.indexHanded(handed))
        found = indexer.resultOf(store.search("bob", parseQuery("friday")))
        self.assertEqual(found.total, 3)
        self.assertNotIn(gone, [s.id for s in found.messages])

    def test_firstLookInFull(self):
        """The process's first hand-over for a mailbox is a full sync: mail it was never handed (delivered before it started) is indexed too."""
        path = _spoolWithMail(self, count=2)
        userid, handed = _handOver(self, path)
        _serveLines(path, [userid, handed])
        self.assertEqual(_indexed(path, "bob"), 5)

    def test_anotherRecordReadsTheMailbox(self):
        """A record that is not the one handed over (the file rewritten meanwhile) is never indexed as it: the mailbox is read under its locks instead."""
        path = _spoolWithMail(self, count=0)
        userid, handed = _handOver(self, path)
        # The first two handed over, the second with another content key.
        wrong = list(handed[1])
        wrong[4] = "00" * 16
        _serveLines(path, [userid, [handed[0], wrong]])
        # The catch-up under the locks indexed all three.
        self.assertEqual(_indexed(path, "bob"), 3)

    def test_anotherFileReadsTheMailbox(self):
        """Deliveries handed over for a file since replaced (an expunge) are read from the mailbox under its locks."""
        path = _spoolWithMail(self, count=0)
        userid, handed = _handOver(self, path)
        store = SpoolStore(path, reactor=indexer.SynchronousReactor(), searchIndex=False)
        self.addCleanup(store.close)
        folder = indexer.resultOf(store.openFolder("bob", "INBOX"))
        first = indexer.resultOf(folder.listMessages()).messages[-1].id
        indexer.resultOf(folder.deleteMessages([first]))
        folder.close()
        store.close()
        _serveLines(path, [userid, handed])
        self.assertEqual(_indexed(path, "bob"), 2)

    def test_busyProcessHandedOverUpToALimit(self):
        """While the pipe to the process is full (it is busy), hand-overs wait in the server's memory, up to HELD_LIMIT bytes; past it each user is named once, and hand-overs resume once the pipe drains."""
        process, written = _runningProcess()
        handed = [[1, 0, 10, "a" * 16, "00" * 16, 1]]
        line = len(json.dumps(["bob", handed], separators=(",", ":"))) + 1
        self.patch(indexerprocess, "HELD_LIMIT", 2 * line)
        process.pauseProducing()
        self.assertTrue(process.kick("bob", handed))
        self.assertTrue(process.kick("bob", handed))
        # Over the limit: named, once; the next kicks wait for the catch-up.
        self.assertTrue(process.kick("bob", handed))
        self.assertTrue(process.kick("bob", handed))
        self.assertTrue(process.kick("alice", handed))
        self.assertTrue(process.kick("alice", handed))
        process.resumeProducing()
        self.assertTrue(process.kick("bob", handed))
        self.assertEqual([json.loads(w) for w in written[:2]], [["bob", handed]] * 2)
        self.assertEqual(written[2:4], [b"bob\n", b"alice\n"])
        self.assertEqual(json.loads(written[4]), ["bob", handed])
        self.assertEqual(len(written), 5)

    def test_malformedKicks(self):
        """Kick lines that are not JSON, or of the wrong shape, are reported and skipped; the process goes on."""
        path = _spoolWithMail(self)
        err = _serve(path, b'[not json\n["bob", 5]\n["bob", [[1, 2]]]\n[7, []]\n["bob"]\nbob\n')
        self.assertEqual(err.count("unreadable kick"), 5)
        self.assertEqual(_indexed(path, "bob"), 3)


class ProcessTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def waitFor(self, condition, deadline=60.0):
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > deadline:
                self.fail("gave up waiting")
            yield task.deferLater(reactor, 0.05, lambda: None)

    @defer.inlineCallbacks
    def test_aKickIndexesInTheProcess(self):
        """A kick has the process index the user's INBOX; stopping it ends the process."""
        path = _spoolWithMail(self)
        process = IndexerProcess(path, reactor)
        ended = defer.Deferred()
        process.processEnded = lambda reason, ended=ended: (
            IndexerProcess.processEnded(process, reason), ended.callback(None))
        self.assertTrue(process.kick("bob"))
        yield self.waitFor(lambda: _indexed(path, "bob") == 3)
        process.stop()
        yield ended
        self.assertFalse(process.alive)
        self.assertFalse(process.kick("bob"))

    @defer.inlineCallbacks
    def test_killedProcessStartedAgain(self):
        """A process killed with SIGKILL is started again by a kick after RESTART_DELAY, and indexes that user's new mail."""
        import signal

        self.patch(indexerprocess, "RESTART_DELAY", 0.2)
        path = _spoolWithMail(self)
        process = IndexerProcess(path, reactor)
        ended = []
        processEnded = process.processEnded
        process.processEnded = lambda reason: (processEnded(reason), ended.append(reason))
        self.assertTrue(process.kick("bob"))
        yield self.waitFor(lambda: _indexed(path, "bob") == 3)
        os.kill(process.transport.pid, signal.SIGKILL)
        yield self.waitFor(lambda: len(ended) == 1)
        self.assertFalse(process.kick("bob"))
        _deliverMore(path, "bob", 2)
        # Kicks say the process will not index until RESTART_DELAY has passed.
        yield self.waitFor(lambda: process.kick("bob"))
        yield self.waitFor(lambda: _indexed(path, "bob") == 5)
        process.stop()
        yield self.waitFor(lambda: len(ended) == 2)

    @defer.inlineCallbacks
    def test_terminalSignalsAreTheServers(self):
        """The process has a process group of its own, so that Ctrl-C at the terminal of a "twistd -n" reaches the server alone, and it ignores SIGINT: it goes on indexing, and ends at the end of its input without a traceback."""
        import signal

        path = _spoolWithMail(self)
        process = IndexerProcess(path, reactor)
        ended = []
        processEnded = process.processEnded
        process.processEnded = lambda reason: (processEnded(reason), ended.append(reason))
        complaints = []
        process.errReceived = complaints.append
        self.assertTrue(process.kick("bob"))
        yield self.waitFor(lambda: _indexed(path, "bob") == 3)
        pid = process.transport.pid
        self.assertEqual(os.getpgid(pid), pid)
        os.kill(pid, signal.SIGINT)
        _deliverMore(path, "bob", 1)
        self.assertTrue(process.kick("bob"))
        yield self.waitFor(lambda: _indexed(path, "bob") == 4)
        process.stop()
        yield self.waitFor(lambda: ended)
        self.assertEqual(ended[0].value.exitCode, 0)
        self.assertEqual(complaints, [])

    def test_noProcessIndexesHere(self):
        """When the process can't start, a kick says so and the server indexes itself."""
        class NoSpawn(task.Clock):
            def spawnProcess(self, *args, **kwargs):
                raise OSError("no processes here")

        process = IndexerProcess("/nonexistent", NoSpawn())
        self.assertFalse(process.kick("bob"))
        self.flushLoggedErrors(OSError)

    def test_startedAgainAfterItEnded(self):
        """A process that ended by itself (a crash) is started again by a kick RESTART_DELAY seconds later; meanwhile kicks say it will not index (the server indexes itself).  One stopped is never started again."""
        from twisted.internet import error
        from twisted.python.failure import Failure

        class Transport:
            def __init__(self):
                self.written = []

            def registerProducer(self, producer, streaming):
                pass

            def write(self, data):
                self.written.append(data)

            def closeStdin(self):
                pass

        class Spawning(task.Clock):
            def __init__(self):
                task.Clock.__init__(self)
                self.spawned = []

            def spawnProcess(self, protocol, *args, **kwargs):
                transport = Transport()
                self.spawned.append(transport)
                protocol.makeConnection(transport)
                return transport

        clock = Spawning()
        process = IndexerProcess("/nonexistent", clock)
        self.assertTrue(process.kick("bob"))
        process.pauseProducing()  # busy when it crashed
        process.processEnded(Failure(error.ProcessTerminated(signal=9)))
        self.assertFalse(process.kick("bob"))
        clock.advance(indexerprocess.RESTART_DELAY - 1)
        self.assertFalse(process.kick("bob"))
        clock.advance(1)
        self.assertTrue(process.kick("alice"))
        self.assertEqual(len(clock.spawned), 2)
        self.assertEqual(clock.spawned[1].written, [b"alice\n"])
        process.stop()
        clock.advance(indexerprocess.RESTART_DELAY)
        self.assertFalse(process.kick("bob"))
        self.assertEqual(len(clock.spawned), 2)


class RelayTests(TestCase):
    """
    A worker's handle on its supervisor's indexing process
    (L{indexerprocess.IndexerRelay}): kick lines on a pipe.
    """

    def pipe(self):
        readEnd, writeEnd = os.pipe()
        os.set_blocking(readEnd, False)
        self.addCleanup(os.close, readEnd)
        return readEnd, writeEnd

    @defer.inlineCallbacks
    def readLines(self, fd, count):
        data = b""
        for _ in range(200):
            try:
                data += os.read(fd, 65536)
            except BlockingIOError:
                pass
            if data.count(b"\n") >= count:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        return data.split(b"\n")[:count]

    @defer.inlineCallbacks
    def test_kicksWrittenOnThePipe(self):
        """Kicks are written on the pipe as the server's own process would get them: a hand-over as a JSON line, a user named alone as a line of its own."""
        readEnd, writeEnd = self.pipe()
        relay = indexerprocess.IndexerRelay(writeEnd, reactor)
        self.addCleanup(relay.stop)
        handed = [[1, 0, 10, "a" * 16, "00" * 16, 1]]
        self.assertTrue(relay.kick("bob", handed))
        self.assertTrue(relay.kick("alice"))
        lines = yield self.readLines(readEnd, 2)
        self.assertEqual(json.loads(lines[0]), ["bob", handed])
        self.assertEqual(lines[1], b"alice")

    @defer.inlineCallbacks
    def test_supervisorGone(self):
        """Once the supervisor's end of the pipe is closed, a kick says it will not be indexed (the worker indexes that mailbox itself), and nothing is raised."""
        readEnd, writeEnd = os.pipe()
        relay = indexerprocess.IndexerRelay(writeEnd, reactor)
        self.addCleanup(relay.stop)
        self.assertTrue(relay.kick("bob"))
        os.close(readEnd)
        for _ in range(200):
            if not relay.kick("bob"):
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertFalse(relay.kick("bob"))

    def test_fullPipeReadsTheUserFromTheLine(self):
        """While the pipe is full, a line passed on by the supervisor (whose user is not given) is held or, past the limit, replaced by its user's name, once, as the server's own kicks are."""
        process, written = _runningProcess()
        line = json.dumps(["bob", [[1, 0, 10, "a" * 16, "00" * 16, 1]]]).encode()
        self.patch(indexerprocess, "HELD_LIMIT", len(line) + 1)
        process.pauseProducing()
        self.assertTrue(process.send(line))
        self.assertTrue(process.send(line))
        self.assertTrue(process.send(line))
        self.assertTrue(process.send(b"alice"))
        self.assertTrue(process.send(b"alice"))
        self.assertEqual(written, [line + b"\n", b"bob\n", b"alice\n"])


class _BrokenPool:
    def submit(self, *args):
        import concurrent.futures.process

        future = concurrent.futures.Future()
        future.set_exception(concurrent.futures.process.BrokenProcessPool("killed"))
        return future

    def shutdown(self, **kwargs):
        pass


class OptimizeTests(SynchronousTestCase):
    def test_optimizedAfterABuildOnly(self):
        """A build ends by merging the text index into one b-tree (FTS5's optimize); a catch-up of more than a batch into an index larger than it does not, since the optimize rewrites the whole index (0.8 of a 2.2 s first search after a burst, 1,000 messages into 20,000), and FTS5 merges as it writes instead; one that at least doubles the index does.  Every message is found either way."""
        from twisted_mail.stores.spool import indexing

        self.patch(indexing, "BATCH", 2)
        path = _spoolWithMail(self, count=6)
        store = SpoolStore(path, reactor=indexer.SynchronousReactor())
        self.addCleanup(store.close)
        index = store._mailbox("bob").index
        optimized = []
        optimize = index.writer.optimize
        index.writer.optimize = lambda: (optimized.append(True), optimize())

        def deliverAndSearch(count):
            for n in range(count):
                indexer.resultOf(store.deliverMessage(
                    "x@example.com", "bob", b"Subject: more\n\nlunch again\n"))
            return indexer.resultOf(store.search("bob", parseQuery("lunch"))).total

        indexer.resultOf(index.sync())
        self.assertEqual(len(optimized), 1)
        self.assertEqual(deliverAndSearch(3), 9)
        self.assertEqual(len(optimized), 1)
        self.assertEqual(deliverAndSearch(9), 18)
        self.assertEqual(len(optimized), 2)


class ParsersTests(SynchronousTestCase):
    def build(self, path, parsers):
        from twisted_mail.stores.spool import indexing

        self.patch(indexing, "PARALLEL_FROM", 3)
        self.patch(indexing, "BATCH", 2)
        store = SpoolStore(path, reactor=indexer.SynchronousReactor())
        try:
            index = store._mailbox("bob").index
            index.writer.discard()
            index.parsers = parsers
            indexer.resultOf(index.sync())
            found = indexer.resultOf(store.search("bob", parseQuery("lunch")))
            return found.total, [(m.id, m.subject) for m in found.messages]
        finally:
            store.close()

    def test_parsingProcessesIndexTheSame(self):
        """A large catch-up parsed in two processes gives the index parsing here gives."""
        path = _spoolWithMail(self, count=7)
        here = self.build(path, 1)
        self.assertEqual(here[0], 7)
        self.assertEqual(self.build(path, 2), here)

    def test_aBrokenPoolParsesHere(self):
        """When the parsing processes fail, the messages are parsed here and none is lost."""
        from twisted_mail.stores.spool import indexing

        path = _spoolWithMail(self, count=7)
        self.patch(indexing, "_parserPool", lambda size: _BrokenPool())
        self.assertEqual(self.build(path, 2)[0], 7)


class _FirstWriterCommitsMeanwhile:
    """
    A connection whose C{BEGIN IMMEDIATE} waits while another writer commits
    (as SQLite's busy wait does): C{meanwhile} runs first, once.
    """

    def __init__(self, db, meanwhile):
        self._db = db
        self._meanwhile = meanwhile

    def execute(self, sql, *args):
        if sql == "BEGIN IMMEDIATE" and self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


class SharedWritersTests(SynchronousTestCase):
    def test_twoWritersIndexOnce(self):
        """A writer that waited while another indexed the same messages indexes none twice."""
        from twisted_mail.stores.spool.store import readRecord

        path = _spoolWithMail(self, count=4)
        stores = [SpoolStore(path, reactor=indexer.SynchronousReactor()) for _ in range(2)]
        for store in stores:
            self.addCleanup(store.close)
        mailbox = stores[0]._mailbox("bob")
        mbox = mailbox.mbox

        def read():
            with mbox.locked() as handle:
                return [(e.key, readRecord(e.msgid, mbox.read(handle, e)))
                        for e in mbox.entries]

        add = [(key, summary, doc) for key, (summary, doc) in indexer.resultOf(mailbox.run(read))]
        first, second = [store._mailbox("bob").index.writer for store in stores]
        second.pairs("INBOX")
        second._db = _FirstWriterCommitsMeanwhile(
            second._db, lambda: first.update("INBOX", (), add))
        second.update("INBOX", (), add)
        self.assertEqual(_indexed(path, "bob"), 4)


class _Entry:
    def __init__(self, start, msgid, key, serial, deleted=False):
        self.start, self.msgid, self.key, self.serial = start, msgid, key, serial
        self.deleted = deleted


class _Mbox:
    def __init__(self, entries):
        self.entries = entries
        self._serialList = [e.serial for e in entries]
        self._byId = {e.msgid: e for e in entries}


class WantedEntriesTests(SynchronousTestCase):
    def test_byIdInFileOrder(self):
        """The entries a batch of a sync reads are found by id, in file order, live ones only, after the serial asked."""
        from twisted_mail.stores.spool.indexing import _wantedEntries

        entries = [_Entry(0, "a", b"1", 1), _Entry(10, "b", b"2", 2), _Entry(20, "c", b"3", 3)]
        mbox = _Mbox(entries)
        self.assertEqual(_wantedEntries(mbox, {("c", b"3"), ("a", b"1")}, None),
                         [entries[0], entries[2]])
        self.assertEqual(_wantedEntries(mbox, {("c", b"3"), ("a", b"1")}, 1), [entries[2]])
        entries[0].deleted = True
        self.assertEqual(_wantedEntries(mbox, {("a", b"1")}, None), [])

    def test_anIdTwoRecordsCarry(self):
        """A wanted message whose id the file's index gives to another record (a copy not yet restamped) is still found."""
        from twisted_mail.stores.spool.indexing import _wantedEntries

        first, copy = _Entry(0, "a", b"1", 1), _Entry(10, "a", b"9", 2)
        mbox = _Mbox([first, copy])
        self.assertIs(mbox._byId["a"], copy)
        self.assertEqual(_wantedEntries(mbox, {("a", b"1"), ("a", b"9")}, None), [first, copy])
