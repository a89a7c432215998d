"""
The mbox spool store beyond the shared contract: the file format, mail
written by other tools, refusing unsafe files, locking, crash repair, disk
errors and the order of sync and acknowledgement.
"""

import errno
import mailbox
import os
import re
import resource
import select
import signal
import stat
import subprocess
import sys

from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.stores.spool import mboxfile, recovery
from twisted_mail.stores.spool import records as mboxrecords
from twisted_mail.stores.spool import store as spool
from twisted_mail import errors
from twisted_mail.mail.message import toMboxRecord
from twisted_mail.stores.spool.store import SpoolStore

from .test_store import SynchronousThreads, makeSpoolStore



def unstamped(content):
    """
    An mbox file's bytes without the store's id, UID and flag lines.
    """
    return re.sub(rb"(?m)^(X-Simplemail-Id|X-UID|Status|X-Status|X-Keywords): .*\n", b"",
                  content)

class SpoolTestCase(SynchronousTestCase):
    def setUp(self):
        self.store = makeSpoolStore(self)
        self.dir = FilePath(self.store.path)

    def ok(self, d):
        return self.successResultOf(d)

    def fails(self, d, exceptionType):
        return self.failureResultOf(d, exceptionType).value

    def bodies(self, userid, store=None):
        """
        The bodies of the messages a new session on C{userid} reads.
        """
        store = store or self.store
        session = self.ok(store.openMailbox(userid))
        found = []
        for _ in range(100000):
            results = []
            session.readMessage().addBoth(results.append)
            (result,) = results
            if isinstance(result, Failure):
                result.trap(errors.NoMoreMail)
                break
            found.append(result.split(b"\n\n", 1)[1])
        self.ok(session.close())
        return found

    def mboxPayloads(self, userid):
        box = mailbox.mbox(self.dir.child(userid).path, create=False)
        try:
            return [m.get_payload(decode=True) for m in box]
        finally:
            box.close()


class FormatTests(SpoolTestCase):
    def test_fileLayout(self):
        """
        A delivered message is a From line, the store's id header, its UID
        and flag lines (with room for flags), the four headers, a blank line,
        the mboxrd-quoted body and a blank line, in a file of mode 0600.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("alice", "bob", b"hi\r\nFrom me\r\n>From you"))
        content = self.dir.child("bob").getContent()
        lines = content.split(b"\n")
        self.assertRegex(
            lines[0], rb"^From alice@localhost \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$"
        )
        self.assertRegex(lines[1], rb"^X-Simplemail-Id: [A-Za-z0-9_-]{16}$")
        self.assertEqual(lines[2], b"X-UID: 1")
        self.assertEqual(lines[3:5], [b"Status: ", b"X-Status: "])
        self.assertRegex(lines[5], rb"^X-Keywords: {60,}$")
        self.assertEqual([l.split(b":")[0] for l in lines[6:10]],
                         [b"From", b"To", b"Date", b"Message-ID"])
        self.assertEqual(lines[10:], [b"", b"hi", b">From me", b">>From you", b"", b""])
        self.assertEqual(stat.S_IMODE(os.stat(self.dir.child("bob").path).st_mode), 0o600)

    def test_nullSenderSeparator(self):
        """
        A message from the null sender gets MAILER-DAEMON on its From line,
        and a sender with spaces or line breaks cannot forge a line.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliverMessage("", "bob", b"Subject: a\n\nx\n"))
        self.ok(self.store.deliverMessage("evil\nFrom x@y 1", "bob", b"Subject: b\n\ny\n"))
        lines = self.dir.child("bob").getContent().split(b"\n")
        self.assertTrue(lines[0].startswith(b"From MAILER-DAEMON "))
        separators = [l for l in lines if l.startswith(b"From ")]
        self.assertEqual(len(separators), 2)
        self.assertTrue(separators[1].startswith(b"From evil-From-x@y-1 "))

    def test_domain(self):
        """
        The configured domain appears in the addresses and the Message-ID.
        """
        store = makeSpoolStore(self, domain="example.org")
        self.ok(store.addUser("bob"))
        self.ok(store.deliver("alice", "bob", b"hi"))
        content = FilePath(store.path).child("bob").getContent()
        self.assertTrue(content.startswith(b"From alice@example.org "))
        self.assertIn(b"\nTo: bob@example.org\n", content)
        self.assertRegex(content, rb"\nMessage-ID: <[0-9a-f]+@example.org>\n")

    def test_spoolDirectoryCreated(self):
        """
        A missing spool directory is created, readable by its owner only.
        """
        path = FilePath(self.mktemp()).child("deep")
        store = makeSpoolStore(self, path.path)
        self.assertTrue(path.isdir())
        self.assertEqual(stat.S_IMODE(os.stat(store.path).st_mode) & 0o077, 0)

    def test_listIgnoresOtherFiles(self):
        """
        LSTU lists mailboxes only: not the lock, journal or temporary files,
        nor directories or names that are not user ids.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("bob", "bob", b"x"))
        session = self.ok(self.store.openMailbox("bob"))
        self.ok(session.readMessage())
        self.ok(session.deleteMessage())
        self.dir.child("bob.lock").setContent(b"")
        self.dir.child("Upper").setContent(b"")
        self.dir.child("adir").makedirs()
        self.assertEqual(self.ok(self.store.listUsers()), ["bob"])


class BatchTests(SpoolTestCase):
    def test_quotingPastTheLimit(self):
        """
        A message that only passes the size limit once mbox quoting is
        added is refused, and the other messages of its batch are stored.
        """
        from twisted_mail.mail.message import separatorLine

        body = b"From x\n" * 100
        separator = separatorLine(b"a", 0)
        store = makeSpoolStore(self, maxMessageSize=len(separator) + len(body) + 10)
        self.ok(store.addUser("bob"))
        mailbox = store._mailbox("bob")
        outcomes = mailbox._build([(separator, (body,)), (separator, (b"fine\n",))])
        self.assertIsInstance(outcomes[0], errors.MessageTooLarge)
        self.assertIsInstance(outcomes[1], str)
        self.assertRegex(
            FilePath(store.path).child("bob").getContent(),
            re.escape(separator) + rb"\nX-Simplemail-Id: [\w-]{16}\nX-UID: 1\n"
            rb"Status: \nX-Status: \nX-Keywords: +\nfine\n\n\Z"
        )
        self.failureResultOf(store.deliverMessage("a", "bob", body), errors.MessageTooLarge)


class HeldThreads(SynchronousThreads):
    """
    A thread pool stand-in whose jobs wait until the test runs them, as
    jobs wait behind other mailboxes' jobs in the one mailbox thread.
    """

    def __init__(self):
        self.jobs = []

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.jobs.append(lambda: SynchronousThreads.callInThreadWithCallback(
            self, onResult, f, *args, **kwargs))

    def runAll(self):
        while self.jobs:
            self.jobs.pop(0)()


class GroupCommitTests(SpoolTestCase):
    def test_latecomersJoinTheWaitingBatch(self):
        """
        Deliveries that arrive while a mailbox's job waits for the mailbox
        thread go out with that job: one write and one sync for all, and
        each is acknowledged only after it.
        """
        threads = HeldThreads()
        store = SpoolStore(FilePath(self.mktemp()), reactor=SynchronousThreads(),
                           threadpool=threads)
        self.addCleanup(store.close)
        self.ok(store.addUser("bob"))
        syncs = []
        realSync = os.fdatasync
        self.patch(spool.os, "fdatasync", lambda fd: (syncs.append(fd), realSync(fd)))
        results = []
        for i in range(3):
            store.deliver("alice", "bob", b"m%d\n" % (i,)).addBoth(results.append)
        self.assertEqual(len(threads.jobs), 1)
        self.assertEqual(results, [])
        threads.runAll()
        # Each delivery fires with its new message's id.
        self.assertEqual([type(r) for r in results], [str, str, str])
        self.assertEqual(len(set(results)), 3)
        # One sync for the append intent, one for the mailbox.
        self.assertEqual(len(syncs), 2)
        self.assertEqual(self.bodies("bob", makeSpoolStore(self, store.path)),
                         [b"m0\n", b"m1\n", b"m2\n"])

    def test_failedBatchAnswersEveryone(self):
        """
        When storing a batch fails unexpectedly, every delivery in it gets
        a temporary failure (logged), none is left waiting.
        """
        threads = HeldThreads()
        store = SpoolStore(FilePath(self.mktemp()), reactor=SynchronousThreads(),
                           threadpool=threads)
        self.addCleanup(store.close)
        self.ok(store.addUser("bob"))

        def broken(records):
            raise RuntimeError("disk on fire")

        self.patch(store._mailbox("bob").mbox, "append", broken)
        results = []
        for i in range(2):
            store.deliver("alice", "bob", b"m%d\n" % (i,)).addBoth(results.append)
        threads.runAll()
        self.assertEqual([r.type for r in results],
                         [errors.TemporaryFailure, errors.TemporaryFailure])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ForeignMailTests(SpoolTestCase):
    def writeWithStdlib(self, userid, bodies, headers=()):
        box = mailbox.mbox(self.dir.child(userid).path)
        box.lock()
        try:
            for body in bodies:
                message = mailbox.mboxMessage()
                message.set_unixfrom("From someone@elsewhere Thu Nov 26 10:00:00 2026")
                for name, value in headers:
                    message[name] = value
                message["Subject"] = "foreign"
                message.set_payload(body)
                box.add(message)
            box.flush()
        finally:
            box.unlock()
            box.close()

    def test_readForeign(self):
        """
        Messages written by Python's mailbox (no Message-ID, a Status header)
        are read, in order.
        """
        self.writeWithStdlib("bob", [b"one\n", b"two\n"], [("Status", "RO")])
        self.assertEqual(self.bodies("bob"), [b"one\n", b"two\n"])

    def test_mboxoQuoting(self):
        """
        A body quoted the mboxo way (">From ") is shown as "From ".
        """
        self.dir.child("bob").setContent(
            b"From x@y Thu Nov 26 10:00:00 2026\nSubject: a\n\n>From the past\n\n"
        )
        os.chmod(self.dir.child("bob").path, 0o600)
        self.assertEqual(self.bodies("bob"), [b"From the past\n"])

    def test_foreignAppendPickedUp(self):
        """
        Mail another program appends during a session is read in it, after
        what was there, and ours stays intact.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("alice", "bob", b"ours\n"))
        session = self.ok(self.store.openMailbox("bob"))
        self.assertTrue(self.ok(session.readMessage()).endswith(b"ours\n"))
        self.writeWithStdlib("bob", [b"theirs\n"])
        self.assertTrue(self.ok(session.readMessage()).endswith(b"theirs\n"))
        self.ok(self.store.deliver("alice", "bob", b"ours again\n"))
        self.assertTrue(self.ok(session.readMessage()).endswith(b"ours again\n"))
        self.assertEqual(
            self.mboxPayloads("bob"), [b"ours\n", b"theirs\n", b"ours again\n"]
        )

    def test_appendAfterFileWithoutBlankLine(self):
        """
        Appending to a file whose last message lacks the trailing blank line
        (or even the final newline) keeps both messages whole.
        """
        for ending in [b"\n", b""]:
            userid = "u%d" % len(ending)
            self.dir.child(userid).setContent(
                b"From x@y Thu Nov 26 10:00:00 2026\nSubject: a\n\nold" + ending
            )
            self.ok(self.store.deliver("alice", userid, b"new\n"))
            self.assertEqual(self.bodies(userid), [b"old\n", b"new\n"])
            self.assertEqual(self.mboxPayloads(userid), [b"old\n", b"new\n"])

    def test_rewriteByAnotherToolKeepsCursor(self):
        """
        When another program rewrites the mailbox (as mutt does when it
        deletes), a session carries on after the message it last read.
        """
        self.writeWithStdlib("bob", [b"m0\n", b"m1\n", b"m2\n", b"m3\n"])
        session = self.ok(self.store.openMailbox("bob"))
        self.ok(session.readMessage())
        self.assertTrue(self.ok(session.readMessage()).endswith(b"m1\n"))
        box = mailbox.mbox(self.dir.child("bob").path)
        box.lock()
        box.remove(0)
        box.flush()
        box.unlock()
        box.close()
        self.assertTrue(self.ok(session.readMessage()).endswith(b"m2\n"))

    def test_expungeKeepsForeignBytes(self):
        """
        Expunging rewrites other programs' messages byte for byte, as the
        store first stamped them (their id and UID lines added, nothing
        else changed).
        """
        self.writeWithStdlib("bob", [b"keep\n", b"drop\n", b"keep too\n"])
        before = self.dir.child("bob").getContent()
        session = self.ok(self.store.openMailbox("bob"))
        self.ok(session.readMessage())
        self.ok(session.readMessage())
        self.ok(session.deleteMessage())
        self.ok(session.close())
        after = self.dir.child("bob").getContent()
        records = before.split(b"\nFrom ")
        self.assertEqual(unstamped(after), records[0] + b"\nFrom " + records[2])
        self.assertEqual(self.mboxPayloads("bob"), [b"keep\n", b"keep too\n"])


class UnsafeFileTests(SpoolTestCase):
    def test_symlinkRefused(self):
        """
        A mailbox that is a symbolic link is refused, logged, and its target
        neither read nor written.
        """
        target = FilePath(self.mktemp())
        target.setContent(b"From x@y Thu Nov 26 10:00:00 2026\n\nsecret\n")
        os.symlink(target.path, self.dir.child("bob").path)
        self.fails(self.store.openMailbox("bob"), errors.MailboxUnavailable)
        self.fails(self.store.deliver("a", "bob", b"x"), errors.MailboxUnavailable)
        self.fails(self.store.hasUser("bob"), errors.MailboxUnavailable)
        self.assertEqual(target.getContent(), b"From x@y Thu Nov 26 10:00:00 2026\n\nsecret\n")
        self.assertEqual(self.ok(self.store.listUsers()), [])

    def test_hardLinkRefused(self):
        """
        A mailbox with a second hard link (which could be outside the spool)
        is refused.
        """
        self.ok(self.store.addUser("bob"))
        os.link(self.dir.child("bob").path, FilePath(self.mktemp()).path)
        self.fails(self.store.openMailbox("bob"), errors.MailboxUnavailable)
        self.fails(self.store.deliver("a", "bob", b"x"), errors.MailboxUnavailable)

    def test_directoryRefused(self):
        """
        A directory with a user's name is not a mailbox.
        """
        self.dir.child("bob").makedirs()
        self.fails(self.store.openMailbox("bob"), errors.MailboxUnavailable)
        self.fails(self.store.addUser("bob"), errors.UserExists)


class LockingTests(SpoolTestCase):
    def test_staleDotLockBroken(self):
        """
        A dot-lock left by a process that no longer exists is broken.
        """
        self.ok(self.store.addUser("bob"))
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        self.dir.child("bob.lock").setContent(b"%d\n" % (pid,))
        self.ok(self.store.deliver("a", "bob", b"x"))
        self.assertFalse(self.dir.child("bob.lock").exists())

    def test_heldDotLockWaitsThenFails(self):
        """
        A dot-lock held by a live process makes the store wait, then answer a
        temporary failure; nothing is written.
        """
        store = makeSpoolStore(self, lockDeadline=0.05)
        self.ok(store.addUser("bob"))
        lock = FilePath(store.path).child("bob.lock")
        lock.setContent(b"1\n")  # pid 1 is alive
        failure = self.fails(store.deliver("a", "bob", b"x"), errors.TemporaryFailure)
        self.assertIn("locked", str(failure))
        self.assertEqual(FilePath(store.path).child("bob").getsize(), 0)
        lock.remove()
        self.ok(store.deliver("a", "bob", b"x"))

    def test_fcntlLockExcludes(self):
        """
        While another program holds an fcntl lock on the mailbox (as
        Python's mailbox and mutt do), the store does not write it.
        """
        store = makeSpoolStore(self, lockDeadline=0.05)
        self.ok(store.addUser("bob"))
        path = FilePath(store.path).child("bob")
        # Another process: POSIX locks are per process, and any close() of
        # the file in this process would drop a lock held here.
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, path.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.addCleanup(holder.wait, 10)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline(), b"locked\n")
        self.fails(store.deliver("a", "bob", b"x"), errors.TemporaryFailure)
        self.assertEqual(path.getsize(), 0)
        self.assertFalse(path.sibling("bob.lock").exists())
        holder.stdin.close()
        self.assertEqual(holder.wait(10), 0)
        self.ok(store.deliver("a", "bob", b"x"))


class LockSourceTests(SpoolTestCase):
    """
    Every dot-lock of a process is a link to one file holding its pid (see
    locks.LockSource): what other mail tools read in it, how fresh it
    looks to them, and the file's life.
    """

    def sourceName(self, pid=None):
        return ".simplemail-%d.lockpid" % (os.getpid() if pid is None else pid,)

    def lockSeenDuringDelivery(self, store):
        """
        Deliver to bob and return (text, mtime) of bob.lock as the write saw it.
        """
        seen = []
        realWriteAll = mboxfile._writeAll
        lock = os.path.join(store.path, "bob.lock")

        def watch(fd, chunks, offset):
            if not seen:
                with open(lock, "rb") as f:
                    seen.append((f.read(), os.fstat(f.fileno()).st_mtime))
            realWriteAll(fd, chunks, offset)

        self.patch(mboxfile, "_writeAll", watch)
        self.ok(store.deliver("a", "bob", b"x"))
        self.patch(mboxfile, "_writeAll", realWriteAll)
        self.assertFalse(os.path.exists(lock))
        return seen[0]

    def test_lockHoldsPidAndIsFresh(self):
        """
        A held dot-lock holds our pid, and its time is the time it was taken
        even though the file it is linked from is old: other tools call a
        lock older than a few minutes stale.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("a", "bob", b"first"))
        source = self.dir.child(self.sourceName())
        self.assertEqual(source.getContent(), b"%d\n" % (os.getpid(),))
        os.utime(source.path, (1000000000, 1000000000))
        text, mtime = self.lockSeenDuringDelivery(self.store)
        self.assertEqual(text, b"%d\n" % (os.getpid(),))
        self.assertLess(abs(mtime - mboxfile.time.time()), 60)

    def test_forkedProcessLocksWithItsPid(self):
        """
        After a fork (twistd daemonizing) the child's locks hold the child's
        pid, not the parent's.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("a", "bob", b"first"))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(r)
                mbox = self.store._mailbox("bob").mbox
                realWriteAll = mboxfile._writeAll

                def watch(fd, chunks, offset):
                    with open(os.path.join(self.store.path, "bob.lock"), "rb") as f:
                        os.write(w, f.read())
                    realWriteAll(fd, chunks, offset)

                mboxfile._writeAll = watch
                mbox.append([[b"From a Thu Nov 26 10:00:00 2026\n", b"x\n", b"\n"]])
            finally:
                os._exit(0)
        os.close(w)
        seen = b""
        try:
            deadline = mboxfile.time.monotonic() + 20
            while mboxfile.time.monotonic() < deadline:
                if select.select([r], [], [], 1)[0]:
                    chunk = os.read(r, 100)
                    if not chunk:
                        break
                    seen += chunk
        finally:
            os.close(r)
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self.assertEqual(seen, b"%d\n" % (pid,))

    def test_removedSourceMadeAgain(self):
        """
        If someone removes the lock source, the next lock makes it again.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("a", "bob", b"first"))
        self.dir.child(self.sourceName()).remove()
        text, _ = self.lockSeenDuringDelivery(self.store)
        self.assertEqual(text, b"%d\n" % (os.getpid(),))

    def test_removedWhenServerStops(self):
        """
        removeLockSource (called as the server stops) removes the source;
        a later lock makes it again.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("a", "bob", b"first"))
        source = self.dir.child(self.sourceName()).path
        self.assertTrue(os.path.exists(source))
        self.store.removeLockSource()
        self.assertFalse(os.path.exists(source))
        self.ok(self.store.deliver("a", "bob", b"second"))
        self.assertTrue(os.path.exists(source))

    def test_deadProcessesSourcesRemovedAtStart(self):
        """
        The repair at start removes the lock sources of processes that are
        gone (a crash leaves them), and keeps those of live ones.
        """
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(0)
        os.waitpid(pid, 0)
        for name in [self.sourceName(pid), self.sourceName(pid) + ".tmp",
                     self.sourceName(1)]:
            self.dir.child(name).setContent(b"x\n")
        self.store.repairNow()
        self.assertEqual(
            sorted(n for n in os.listdir(self.store.path) if n.startswith(".simplemail-")),
            [self.sourceName(1)],
        )


_HOLD_LOCK = """
import fcntl, sys
with open(sys.argv[1], "rb+") as f:
    fcntl.lockf(f, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()
"""


class CrashRepairTests(SpoolTestCase):
    def prepare(self):
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("alice", "bob", b"first\n"))
        self.ok(self.store.deliver("alice", "bob", b"second\nFrom x\n"))
        path = self.dir.child("bob").path
        good = self.dir.child("bob").getContent()
        record = toMboxRecord(b"From alice@localhost Thu Nov 26 10:00:00 2026",
                              b"Subject: torn\n\nthird\n.\n")
        return path, good, record

    def test_tornAppendCutAtEveryOffset(self):
        """
        A delivery torn at any byte by a crash (its append intent on disk)
        is cut off exactly at the next access: never shown, nothing else
        lost.
        """
        path, good, record = self.prepare()
        ino = os.stat(path).st_ino
        for cut in range(1, len(record)):
            with open(path, "wb") as f:
                f.write(good + record[:cut])
            mbox = mboxfile.MboxFile(self.store._dirfd, "bob", iter(range(10**6)))
            mbox._writeIntent(ino, len(good), len(good) + len(record), sync=False,
                              head=record)
            store = makeSpoolStore(self, self.store.path)
            self.assertEqual(self.bodies("bob", store), [b"first\n", b"second\nFrom x\n"],
                             "cut at %d" % (cut,))
            self.assertEqual(FilePath(path).getContent(), good, "cut at %d" % (cut,))
        self.flushLoggedErrors()

    def test_anotherProgramsWritesNotCut(self):
        """
        When, after a crash, another program broke the dead server's lock
        and appended where the interrupted delivery began, its message is
        kept: the intent's first bytes do not match, so nothing is cut.
        """
        path, good, record = self.prepare()
        ino = os.stat(path).st_ino
        theirs = b"From someone@else Thu Nov 26 11:00:00 2026\nSubject: b\n\ntheirs\n\n"
        with open(path, "ab") as f:
            f.write(theirs)
        mbox = mboxfile.MboxFile(self.store._dirfd, "bob", iter(range(10**6)))
        mbox._writeIntent(ino, len(good), len(good) + len(record) + 100, sync=False,
                          head=record)
        store = makeSpoolStore(self, self.store.path)
        self.assertEqual(self.bodies("bob", store),
                         [b"first\n", b"second\nFrom x\n", b"theirs\n"])
        self.assertEqual(unstamped(FilePath(path).getContent()), unstamped(good) + theirs)

    def test_tornWithHeadCut(self):
        """
        A torn tail that starts with the intent's first bytes is ours and is
        cut off.
        """
        path, good, record = self.prepare()
        ino = os.stat(path).st_ino
        with open(path, "ab") as f:
            f.write(record[:50])
        mbox = mboxfile.MboxFile(self.store._dirfd, "bob", iter(range(10**6)))
        mbox._writeIntent(ino, len(good), len(good) + len(record), sync=False,
                          head=record)
        store = makeSpoolStore(self, self.store.path)
        self.assertEqual(len(self.bodies("bob", store)), 2)
        self.assertEqual(FilePath(path).getContent(), good)
        self.flushLoggedErrors()

    def test_anotherServersTornAppendCut(self):
        """
        A torn append left by another server process on the same spool, in
        a mailbox this store has already read, is cut off before this
        store's next delivery, which is kept whole.
        """
        path, good, record = self.prepare()
        self.assertEqual(len(self.bodies("bob")), 2)
        with open(path, "ab") as f:
            f.write(record[:40])
        mbox = mboxfile.MboxFile(self.store._dirfd, "bob", iter(range(10**6)))
        mbox._writeIntent(os.stat(path).st_ino, len(good), len(good) + len(record),
                          sync=False, head=record)
        self.ok(self.store.deliver("alice", "bob", b"after\n"))
        self.assertEqual(self.bodies("bob"), [b"first\n", b"second\nFrom x\n", b"after\n"])
        # Python's mailbox (mboxo) reads the same three messages.
        payloads = self.mboxPayloads("bob")
        self.assertEqual([payloads[0], payloads[2]], [b"first\n", b"after\n"])
        self.assertEqual(len(payloads), 3)

    def test_previousReleasesIntentCut(self):
        """
        A torn tail whose intent the previous release wrote (no UIDNEXT in
        it) is still recognised and cut off after an upgrade.
        """
        path, good, record = self.prepare()
        ino = os.stat(path).st_ino
        with open(path, "ab") as f:
            f.write(record[:50])
        old = b"%d %d %d %s" % (ino, len(good), len(good) + len(record),
                                record[:32].hex().encode())
        FilePath(self.store.path).child(".bob.append").setContent(old.ljust(127) + b"\n")
        store = makeSpoolStore(self, self.store.path)
        self.assertEqual(len(self.bodies("bob", store)), 2)
        self.assertEqual(FilePath(path).getContent(), good)
        self.flushLoggedErrors()

    def test_uidNextFromTheIntent(self):
        """
        A UID record older than the mail (its last write lost in a power
        cut) does not make the server give a UID again once another program
        removed the newest message: the append intent, synced with each
        append, keeps UIDNEXT.
        """
        path, good, record = self.prepare()
        uids = FilePath(self.store.path).child(".bob.uids")
        before = uids.getContent()
        self.ok(self.store.deliver("alice", "bob", b"third\n"))
        self.store.close()
        # The record's write after the third delivery is lost; another
        # program deletes the third message.
        uids.setContent(before)
        FilePath(path).setContent(good)
        store = makeSpoolStore(self, self.store.path)
        view = self.ok(store.openFolder("bob", "INBOX"))
        info = [f for f in self.ok(store.listFolders("bob")) if f.name == "INBOX"][0]
        self.assertEqual(info.uidNext, 4)
        view.close()

    def test_completeAppendKept(self):
        """
        An append that completed is kept even if its intent record survived.
        """
        path, good, record = self.prepare()
        with open(path, "ab") as f:
            f.write(record)
        mbox = mboxfile.MboxFile(self.store._dirfd, "bob", iter(range(10**6)))
        mbox._writeIntent(os.stat(path).st_ino, len(good), len(good) + len(record),
                          sync=False)
        store = makeSpoolStore(self, self.store.path)
        self.assertEqual(len(self.bodies("bob", store)), 3)

    def test_crashMidWrite(self):
        """
        A crash in the middle of writing a delivery leaves a tail that the
        next store cuts off, keeping every acknowledged message.
        """
        path, good, record = self.prepare()

        class Crash(BaseException):
            pass

        realWriteAll = mboxfile._writeAll

        def tornWrite(fd, chunks, offset):
            data = b"".join(chunks)
            if len(data) > 100:
                realWriteAll(fd, [data[: len(data) // 2]], offset)
                raise Crash()
            realWriteAll(fd, chunks, offset)

        self.patch(mboxfile, "_writeAll", tornWrite)
        self.failureResultOf(
            self.store.deliver("alice", "bob", b"x" * 500), errors.TemporaryFailure
        )
        self.assertEqual(len(self.flushLoggedErrors(Crash)), 1)
        self.assertGreater(len(FilePath(path).getContent()), len(good))
        self.patch(mboxfile, "_writeAll", realWriteAll)
        store = makeSpoolStore(self, self.store.path)
        self.assertEqual(self.bodies("bob", store), [b"first\n", b"second\nFrom x\n"])
        self.assertEqual(FilePath(path).getContent(), good)

    def test_deleteSurvivesCrashBeforeExpunge(self):
        """
        An acknowledged delete stays done when the server dies before the
        session ends, and the next session's end expunges it.
        """
        path, good, record = self.prepare()
        session = self.ok(self.store.openMailbox("bob"))
        self.ok(session.readMessage())
        self.ok(session.deleteMessage())
        # No close: the process "dies" here.
        store = makeSpoolStore(self, self.store.path)
        self.assertEqual(self.bodies("bob", store), [b"second\nFrom x\n"])
        self.assertEqual(self.mboxPayloads("bob"), [b"second\n>From x\n"])
        self.assertFalse(self.dir.child(".bob.deleted").exists())

    def test_crashDuringExpungeBeforeRename(self):
        """
        An expunge interrupted before its rename leaves the delete in force
        and the old file whole.
        """
        path, good, record = self.prepare()
        session = self.ok(self.store.openMailbox("bob"))
        self.ok(session.readMessage())
        self.ok(session.deleteMessage())

        def crash(*args, **kwargs):
            raise KeyboardInterrupt()

        self.patch(spool.os, "rename", crash)
        self.failureResultOf(
            self.store._mailbox("bob").run(self.store._mailbox("bob").mbox.expunge),
            KeyboardInterrupt,
        )
        self.patch(spool.os, "rename", os.replace)
        self.assertEqual(FilePath(path).getContent(), good)
        store = makeSpoolStore(self, self.store.path)
        self.assertEqual(self.bodies("bob", store), [b"second\nFrom x\n"])

    def test_crashDuringExpungeAfterRename(self):
        """
        An expunge interrupted after its rename, before the journal is
        removed, hides nothing more: a later identical message is shown.
        """
        path, good, record = self.prepare()
        session = self.ok(self.store.openMailbox("bob"))
        self.ok(session.readMessage())
        self.ok(session.deleteMessage())
        journal = self.dir.child(".bob.deleted")
        mbox = self.store._mailbox("bob").mbox
        self.patch(mbox, "_removeJournal", lambda: None)
        self.ok(self.store._mailbox("bob").run(mbox.expunge))
        self.assertTrue(os.path.exists(journal.path))
        # A message byte-identical to the deleted one arrives (another tool).
        first = good.split(b"\nFrom alice")[0] + b"\n"
        with open(path, "ab") as f:
            f.write(first)
        store = makeSpoolStore(self, self.store.path)
        self.assertEqual(self.bodies("bob", store),
                         [b"second\nFrom x\n", b"first\n"])
        self.assertFalse(os.path.exists(journal.path))


class DiskErrorTests(SpoolTestCase):
    def test_fileSizeLimit(self):
        """
        A delivery that hits the file-size limit (EFBIG) is refused as a
        temporary failure, leaves the file as it was, and the store goes on.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("alice", "bob", b"before\n"))
        good = self.dir.child("bob").getContent()
        # The limit applies to every file the process writes (trial's log
        # too), so the refused delivery happens in a child process.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(r)
            code = b"?"
            try:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
                resource.setrlimit(resource.RLIMIT_FSIZE, (len(good) + 1000, hard))
                results = []
                self.store.deliver("alice", "bob", b"y" * 5000).addBoth(results.append)
                if isinstance(results[0], Failure):
                    code = str(results[0].value).encode("utf-8")
                else:
                    code = b"acknowledged"
            finally:
                os.write(w, code)
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as reader:
            outcome = reader.read()
        os.waitpid(pid, 0)
        self.assertIn(b"temporary failure", outcome)
        self.assertIn(b"File too large", outcome)
        self.assertEqual(self.dir.child("bob").getContent(), good)
        self.ok(self.store.deliver("alice", "bob", b"after\n"))
        self.assertEqual(self.bodies("bob"), [b"before\n", b"after\n"])

    def test_noSpace(self):
        """
        ENOSPC in the middle of a delivery is never acknowledged, nothing
        torn is left, and the next delivery works.
        """
        self.ok(self.store.addUser("bob"))
        self.ok(self.store.deliver("alice", "bob", b"before\n"))
        good = self.dir.child("bob").getContent()
        realWriteAll = mboxfile._writeAll

        def full(fd, chunks, offset):
            data = b"".join(chunks)
            if len(data) > 1000:
                realWriteAll(fd, [data[:700]], offset)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            realWriteAll(fd, chunks, offset)

        self.patch(mboxfile, "_writeAll", full)
        failure = self.fails(
            self.store.deliver("alice", "bob", b"z" * 5000), errors.TemporaryFailure
        )
        self.assertIn("No space left", str(failure))
        self.assertEqual(self.dir.child("bob").getContent(), good)
        self.ok(self.store.deliver("alice", "bob", b"after\n"))
        self.assertEqual(self.bodies("bob"), [b"before\n", b"after\n"])

    def test_failedSyncNotAcknowledged(self):
        """
        A failed fsync of the mailbox is not retried and acknowledged: the
        delivery fails and the message is not kept.
        """
        self.ok(self.store.addUser("bob"))
        realSync = os.fdatasync
        mailboxIno = os.stat(self.dir.child("bob").path).st_ino

        def failingSync(fd):
            if os.fstat(fd).st_ino == mailboxIno:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            realSync(fd)

        self.patch(spool.os, "fdatasync", failingSync)
        self.fails(self.store.deliver("alice", "bob", b"lost?\n"), errors.TemporaryFailure)
        self.patch(spool.os, "fdatasync", realSync)
        self.assertEqual(self.bodies("bob"), [])


class OrderingTests(SpoolTestCase):
    def test_syncBeforeAcknowledgement(self):
        """
        The mailbox is synced after its data is written and before the
        delivery is acknowledged; the delete journal likewise.
        """
        self.ok(self.store.addUser("bob"))
        events = []
        mailboxIno = os.stat(self.dir.child("bob").path).st_ino
        realSync, realWriteAll = os.fdatasync, mboxfile._writeAll

        def name(fd):
            return "mailbox" if os.fstat(fd).st_ino == mailboxIno else "other"

        def recordSync(fd):
            events.append(("sync", name(fd)))
            realSync(fd)

        def recordWrite(fd, data, offset):
            events.append(("write", name(fd)))
            realWriteAll(fd, data, offset)

        self.patch(spool.os, "fdatasync", recordSync)
        self.patch(mboxfile, "_writeAll", recordWrite)
        self.patch(recovery, "_writeAll", recordWrite)
        self.store.deliver("alice", "bob", b"x\n").addCallback(
            lambda _: events.append(("ack", None))
        )
        self.assertEqual(events[-3:], [("write", "mailbox"), ("sync", "mailbox"),
                                       ("ack", None)])
        events[:] = []
        session = self.ok(self.store.openMailbox("bob"))
        self.ok(session.readMessage())
        session.deleteMessage().addCallback(lambda _: events.append(("ack", None)))
        self.assertEqual(events[-3:], [("write", "other"), ("sync", "other"),
                                       ("ack", None)])


class ScanTests(SpoolTestCase):
    def test_chunkBoundaries(self):
        """
        Separators that straddle read chunks are found: the index agrees with
        the stdlib mailbox module however the file is read.
        """
        self.ok(self.store.addUser("bob"))
        for i in range(40):
            self.ok(self.store.deliver("alice", "bob", b"body %d\n" % i + b"x" * i))
        expected = [p.replace(b"\n>From", b"\nFrom") for p in self.mboxPayloads("bob")]
        for chunk in [7, 13, 64, 4096]:
            self.patch(mboxrecords, "_READ_CHUNK", chunk)
            store = makeSpoolStore(self, self.store.path)
            self.assertEqual(self.bodies("bob", store), expected)

    def test_preambleNotShown(self):
        """
        Text before the first From line is not a message: it is neither shown
        nor removed.
        """
        self.dir.child("bob").setContent(
            b"garbage\n\nFrom x@y Thu Nov 26 10:00:00 2026\nSubject: a\n\nreal\n\n"
        )
        self.assertEqual(self.bodies("bob"), [b"real\n"])


class KeyTests(SynchronousTestCase):
    def test_chunksKeyMatchesWholeKey(self):
        """
        A message indexed from the pieces it was written in gets the same
        identity as when it is read back whole, however the trailing
        newlines fall across the pieces.
        """
        cases = [
            [b"From a\n", b"x\n", b"\n"],
            [b"From a\n", b"x\n\n", b"\n", b"", b"\n"],
            [b"From a\n", bytearray(b"y\n"), b"\n\n\n"],
            [b"\n", b"\n"],
            [b"From a\nbody without newline"],
        ]
        for chunks in cases:
            self.assertEqual(
                mboxrecords._chunksKey(chunks), mboxrecords._messageKey(b"".join(chunks)), chunks
            )


class UnknownUserTests(SpoolTestCase):
    """
    Issue 23, item 6: asking about user ids that do not exist leaves
    nothing behind in the store.
    """

    def test_unknownUsersNotKept(self):
        """
        2,000 mailbox opens and deliveries for names that do not exist are
        refused and leave no mailbox objects behind; existing users keep
        theirs.
        """
        self.successResultOf(self.store.addUser("bob"))
        self.successResultOf(self.store.openMailbox("bob")).close()
        for i in range(1000):
            self.failureResultOf(self.store.openMailbox("nobody%d" % i), errors.NoSuchUser)
            self.failureResultOf(
                self.store.deliver("bob", "ghost%d" % i, b"hi\n"), errors.NoSuchUser)
        self.assertEqual(list(self.store._mailboxes), ["bob"])
        self.assertEqual(self.store._known, {"bob"})
