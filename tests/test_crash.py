"""
Crash and concurrency tests on real twistd processes: SIGKILL at the worst
moments, two servers and another mail tool on one spool directory.

The random parts print their seed; set SIMPLEMAIL_CRASH_SEED to replay one,
SIMPLEMAIL_CRASH_ROUNDS to run more harness rounds.  Longer runs by hand:
C{python -m tests.crashharness --rounds 30 --seed S}.
"""

import io
import mailbox
import os
import random
import resource
import signal
import subprocess
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.crashharness import (
    Client,
    Harness,
    identify,
    makeBody,
    mboxWriter,
    readMailboxFile,
    splitMessage,
    startMboxWriter,
)
from tests.serverprocess import (
    ClientError,
    ServerProcess,
    stuffBody,
)


def seedFor(test):
    """
    The seed of a randomised test: SIMPLEMAIL_CRASH_SEED, or a fresh one;
    printed so that a failure can be replayed.
    """
    seed = os.environ.get("SIMPLEMAIL_CRASH_SEED")
    seed = int(seed) if seed else random.SystemRandom().randrange(1 << 32)
    print("{}: seed {} (SIMPLEMAIL_CRASH_SEED={} replays it)".format(test.id(), seed, seed))
    return seed


def bigBody(lines=4000):
    return b"".join(b"%06d " % (i,) + b"x" * 1000 + b"\n" for i in range(lines))


class CrashTestCase(SynchronousTestCase):
    def startServer(self, spool, name="server", **kwargs):
        server = ServerProcess(
            spool, logPath=os.path.abspath(self.mktemp()) + "." + name + ".log", **kwargs
        )
        self.addCleanup(server.close)
        server.start()
        return server

    def connect(self, server, **kwargs):
        client = server.connect(**kwargs)
        self.addCleanup(client.close)
        return client

    def problemsForOtherTools(self, path, count):
        """
        What another mail tool would find wrong with a mailbox that should
        hold C{count} whole messages: a torn one, a lock it cannot take.
        """
        problems = []
        found = [raw for _, _, _, raw in readMailboxFile(path, quoted=False)]
        if len(found) != count:
            problems.append(
                "after the restart, before any client, mailbox.mbox sees {} messages "
                "(sizes {}): the torn delivery is still in the file".format(
                    len(found), [len(r) for r in found]
                )
            )
            return problems
        box = mailbox.mbox(path, create=False)
        try:
            box.lock()
        except mailbox.ExternalClashError as e:
            problems.append(
                "after the restart another tool cannot lock the mailbox: {} "
                "({}.lock left by the killed server)".format(e, path)
            )
        else:
            box.unlock()
        finally:
            box.close()
        return problems

    def killWhenGrowing(self, server, path, client, body, timeout=10.0):
        """
        Send C{body} to the mailbox at C{path} and SIGKILL the server the
        moment the file starts to grow: the append is torn.

        @return: the size of the file before the append.
        """
        before = os.stat(path).st_size
        self.assertTrue(client.command(b"SEND " + os.path.basename(path).encode()).startswith(b"+OK"))
        client.sendall(stuffBody(body) + b".\r\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.stat(path).st_size != before:
                break
        os.kill(server.pid, signal.SIGKILL)
        server.kill()
        return before


class HarnessTests(SynchronousTestCase):
    def test_crashHarness(self):
        """
        However the server is killed, every acknowledged message and delete survives the restart exactly once and nothing torn is ever shown.
        """
        seed = seedFor(self)
        rounds = os.environ.get("SIMPLEMAIL_CRASH_ROUNDS")
        # CI: 8 rounds, cut short after 30 s on a slow machine.
        timeLimit = None if rounds else 30
        rounds = int(rounds or 8)
        out = io.StringIO()
        harness = Harness(
            self.mktemp(), seed, clients=4, users=3, out=out, timeLimit=timeLimit
        )
        self.addCleanup(harness.close)
        ok = harness.run(rounds)
        print(harness.summary())
        if not ok:
            self.fail(
                "crash harness (seed {}) found violations; spool and log in {}\n{}".format(
                    seed, harness.workdir, out.getvalue()
                )
            )


    def test_crashHarnessWorkers(self):
        """
        With --workers 2, however one worker or the whole server is killed, every acknowledged message and delete survives exactly once and nothing torn is ever shown.
        """
        seed = seedFor(self)
        rounds = os.environ.get("SIMPLEMAIL_CRASH_ROUNDS")
        # CI: 4 rounds, cut short after 8 s (about 2.5 s a round).
        timeLimit = None if rounds else 8
        rounds = int(rounds or 4)
        out = io.StringIO()
        harness = Harness(
            self.mktemp(), seed, clients=4, users=3, out=out, timeLimit=timeLimit, workers=2
        )
        self.addCleanup(harness.close)
        ok = harness.run(rounds)
        print(harness.summary())
        if not ok:
            self.fail(
                "crash harness with --workers 2 (seed {}) found violations; spool and log "
                "in {}\n{}".format(seed, harness.workdir, out.getvalue())
            )


    def test_crashHarnessModel(self):
        """
        However a process making flag changes, moves, deliveries and folder deletes is killed, every acknowledged change is kept, no message is lost or doubled, and a deleted folder's mail never comes back.
        """
        from tests import crashmodel

        seed = seedFor(self)
        rounds = int(os.environ.get("SIMPLEMAIL_CRASH_ROUNDS") or 6)
        problems, acknowledged = crashmodel.run(
            os.path.join(self.mktemp(), "spool"), rounds, seed)
        print("model crash harness: {} rounds, {} acknowledged operations".format(
            rounds, acknowledged))
        if problems:
            self.fail("model crash harness (seed {}) found:\n{}".format(
                seed, "\n".join(problems)))


class DeterministicCrashTests(CrashTestCase):
    def test_acknowledgedDeleteSurvivesCrash(self):
        """
        A message whose delete was acknowledged is never shown after a crash, and the file loses it when the next session ends.
        """
        spool = os.path.abspath(self.mktemp())
        server = self.startServer(spool)
        c = self.connect(server)
        c.command(b"ADDU bob")
        c.command(b"USER bob")
        for i in range(3):
            c.command(b"SEND bob m%d" % (i,))
        c.command(b"USER bob")
        c.readMessage()
        c.readMessage()
        self.assertEqual(c.command(b"DELM"), b"+OK message deleted")
        server.kill()  # the session never ends
        server.start()
        c = self.connect(server)
        self.assertEqual(c.command(b"USER bob"), b"+OK bob has 2 messages")
        bodies = []
        while True:
            text = c.readMessage()
            if text is None:
                break
            bodies.append(splitMessage(text)[1])
        self.assertEqual(bodies, [b"m0\n", b"m2\n"])
        self.assertEqual(c.command(b"DONEU"), b"+OK goodbye bob")
        self.assertEqual(
            [splitMessage(raw)[1] for _, _, _, raw in readMailboxFile(os.path.join(spool, "bob"))],
            [b"m0\n", b"m2\n"],
        )

    def test_tornAppendRepairedAtStart(self):
        """
        After a crash in the middle of a delivery and a restart, other mail tools see no torn message and can lock the mailbox.
        """
        spool = os.path.abspath(self.mktemp())
        path = os.path.join(spool, "bob")
        server = self.startServer(spool)
        c = self.connect(server)
        c.command(b"ADDU bob")
        c.command(b"USER bob")
        self.assertEqual(c.command(b"SEND bob first"), b"+OK message delivered to bob")
        body = bigBody()
        for attempt in range(5):
            before = self.killWhenGrowing(server, path, c, body)
            size = os.stat(path).st_size
            if before < size < before + len(body):
                break  # torn
            server.start()
            c = self.connect(server)
            c.command(b"USER bob")
        else:
            self.fail("could not tear an append in 5 attempts")
        # The state a crash leaves: a torn tail, and the server's dot-lock.
        # (Earlier attempts may have stored the whole message, unacknowledged.)
        found = readMailboxFile(path, quoted=False)
        self.assertFalse(found[-1][1])
        whole = [splitMessage(raw)[1] for _, _, _, raw in found[:-1]]
        self.assertEqual(whole[0], b"first\n")
        server.start()
        # The repair may run just after the server starts listening: poll.
        deadline = time.monotonic() + 10
        while True:
            problems = self.problemsForOtherTools(path, len(whole))
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(0.05)

        # Through the protocol the torn message is never shown; the file is
        # repaired by that access.
        c = self.connect(server)
        self.assertTrue(c.command(b"USER bob").startswith(b"+OK bob has %d " % (len(whole),)))
        shown = []
        for _ in range(10):
            text = c.readMessage()
            if text is None:
                break
            shown.append(splitMessage(text)[1])
        self.assertEqual(shown, whole)
        self.assertEqual(
            [splitMessage(raw)[1] for _, _, _, raw in readMailboxFile(path, quoted=False)],
            whole,
        )
        self.assertIn("of an interrupted delivery", server.log())
        if problems:
            self.fail("; ".join(problems))

    def test_crashWhileTakingALock(self):
        """
        A crash at the instant the server takes or holds a mailbox's dot-lock does not leave that mailbox refused after a restart.
        """
        spool = os.path.abspath(self.mktemp())
        users = [b"u0", b"u1", b"u2", b"u3"]
        server = self.startServer(spool)
        with server.connect() as c:
            for u in users:
                c.command(b"ADDU " + u)

        def load(user, stop):
            try:
                with server.connect(timeout=10) as client:
                    client.command(b"USER " + user)
                    for i in range(100000):
                        if stop.is_set():
                            break
                        client.command(b"SEND " + user + b" hello %d" % (i,))
            except (ClientError, OSError):
                pass  # killed

        for attempt in range(3):
            if not server.running():
                server.start()
            stop = threading.Event()
            threads = [threading.Thread(target=load, args=(u, stop)) for u in users]
            for t in threads:
                t.start()
            # Kill the moment a dot-lock is seen still empty (its holder has
            # not written its pid yet), or else held, after a short while.
            started = time.monotonic()
            killed = False
            while not killed and time.monotonic() < started + 3:
                for entry in os.scandir(spool):
                    if entry.name.endswith(".lock"):
                        try:
                            size = entry.stat().st_size
                        except FileNotFoundError:
                            continue
                        if size == 0 or time.monotonic() > started + 0.2:
                            os.kill(server.pid, signal.SIGKILL)
                            killed = True
                            break
            server.kill()
            stop.set()
            for t in threads:
                t.join(30)
                self.assertFalse(t.is_alive())
            left = {
                n: open(os.path.join(spool, n), "rb").read()
                for n in os.listdir(spool)
                if n.endswith(".lock")
            }
            server.start()
            c = server.connect(timeout=8)
            try:
                for u in users:
                    began = time.monotonic()
                    try:
                        reply = c.command(b"USER " + u)
                    except ClientError:
                        reply = b"(no reply within 8s)"
                    self.assertTrue(
                        reply.startswith(b"+OK"),
                        "attempt {}: after a crash that left the dot-locks {!r}, USER {} "
                        "got {!r} after {:.1f}s".format(
                            attempt, left, u.decode(), reply, time.monotonic() - began
                        ),
                    )
            finally:
                c.close()


class SharedSpoolTests(CrashTestCase):
    def test_twoServersAndAnotherTool(self):
        """
        Two servers on one spool, both delivering and deleting, and another tool appending with mailbox.mbox lose nothing and duplicate nothing.
        """
        seed = seedFor(self)
        rng = random.Random(seed)
        workdir = os.path.abspath(self.mktemp())
        spool = os.path.join(workdir, "spool")
        a = self.startServer(spool, "a")
        b = self.startServer(spool, "b")
        users = ["u0", "u1", "u2"]
        with a.connect() as c:
            for u in users:
                self.assertTrue(c.command(b"ADDU " + u.encode()).startswith(b"+OK"))
        harness = Harness(workdir, seed, users=users, server=a, out=io.StringIO())
        ledger = harness.ledger

        writer = startMboxWriter(spool, users, 40, rng.getrandbits(32))
        self.addCleanup(_reap, writer)
        stop = threading.Event()
        clients = [
            Client(
                "{}{}".format(name, i),
                server.port,
                users,
                ledger,
                random.Random(rng.getrandbits(64)),
                stop,
                spool,
                "{}{}".format(name, i),
                bigProbability=0.05,
                bigLines=(100, 400),
                maxOps=50,
            )
            for name, server in (("a", a), ("b", b))
            for i in range(2)
        ]
        for t in clients:
            t.start()
        self.addCleanup(stop.set)
        try:
            out, err = writer.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            writer.kill()
            out, err = writer.communicate()
            self.fail("the mailbox.mbox writer did not finish: {!r}".format(err[-2000:]))
        self.assertEqual(writer.returncode, 0, err.decode("utf-8", "replace")[-3000:])
        for t in clients:
            t.join(90)
            self.assertFalse(t.is_alive(), "client {} hung".format(t.name))
        for t in clients:
            self.assertEqual(t.ended, "done", "{}: {}".format(t.name, t.ended))
            self.assertEqual(t.unexpected, [], t.name)
        written = [line.split() for line in out.decode().splitlines() if line.startswith("ACK ")]
        self.assertEqual(len(written), 40)
        with ledger.lock:
            for _, user, marker in written:
                ledger.sent[marker] = user
                ledger.acked[marker] = user
        self.assertEqual(ledger.deleteMaybe, set())

        # Every mailbox through server a, then the files.
        seen = harness.verify(1, set(ledger.sent))
        print(harness.summary())
        for marker, user in ledger.acked.items():
            if marker not in ledger.deleteAcked:
                self.assertEqual(seen.get(marker), user, marker)
        self.assertEqual(ledger.violations, [], harness.summary())
        # Server b agrees.
        with b.connect() as c:
            for u in users:
                self.assertTrue(c.command(b"USER " + u.encode()).startswith(b"+OK"))
                markers = []
                while True:
                    text = c.readMessage()
                    if text is None:
                        break
                    marker, intact = identify(splitMessage(text)[1])
                    self.assertTrue(intact, text[:300])
                    markers.append(marker)
                expected = [m for m, _, _, _ in readMailboxFile(os.path.join(spool, u))]
                self.assertEqual(markers, expected)
        for server in (a, b):
            for needle in ("Traceback", "Unhandled error"):
                self.assertNotIn(needle, server.log())

    def test_listUsersBesideAnotherTool(self):
        """
        While another tool locks and appends to a mailbox, LSTU lists only the users, never that tool's lock files.
        """
        spool = os.path.abspath(self.mktemp())
        server = self.startServer(spool)
        c = self.connect(server)
        c.command(b"ADDU u0")
        writer = startMboxWriter(spool, ["u0"], 300, 1)
        self.addCleanup(_reap, writer)
        phantoms = set()
        deadline = time.monotonic() + 60
        calls = 0
        while writer.poll() is None and time.monotonic() < deadline:
            calls += 1
            status, users = c.multiline(b"LSTU")
            phantoms.update(u for u in users if u != b"u0")
        out, err = writer.communicate(timeout=60)
        self.assertEqual(writer.returncode, 0, err[-2000:])
        self.assertEqual(
            sorted(phantoms),
            [],
            "LSTU (called {} times while the writer ran) listed lock files of "
            "Python's mailbox module as users".format(calls),
        )

    def test_failedDeliveryThenAnotherTool(self):
        """
        A delivery that fails for lack of space does not make the server later cut off mail another tool appended meanwhile.
        """
        spool = os.path.abspath(self.mktemp())
        server = self.startServer(spool)
        # Like a full disk: the server may not write files over 256 KiB.
        limit = 256 * 1024
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (limit, limit))
        c = self.connect(server)
        c.command(b"ADDU bob")
        c.command(b"USER bob")
        self.assertEqual(c.command(b"SEND bob first"), b"+OK message delivered to bob")
        reply = c.send("bob", bigBody(300))
        self.assertTrue(reply.startswith(b"-ERR"), reply)
        # Another tool delivers, with the locks mail tools use.
        [(user, marker)] = mboxWriter(spool, ["bob"], 1, 7, out=io.StringIO())
        self.assertEqual(
            [m for m, _, _, _ in readMailboxFile(os.path.join(spool, "bob"))][1:], [marker]
        )
        reply = c.command(b"USER bob")
        bodies = []
        for _ in range(10):
            text = c.readMessage()
            if text is None:
                break
            bodies.append(splitMessage(text)[1])
        self.assertEqual(
            bodies,
            [b"first\n", makeBody(marker)],
            "USER bob said {!r}; the message another tool appended after the failed "
            "delivery is gone from the file ({} messages left); server log:\n{}".format(
                reply,
                len(readMailboxFile(os.path.join(spool, "bob"))),
                server.log()[-1200:],
            ),
        )


def _reap(process):
    if process.poll() is None:
        process.kill()
    process.wait(30)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
