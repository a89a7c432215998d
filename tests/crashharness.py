"""
Crash harness for the simplemail server: real twistd processes, real
sockets, SIGKILL at random moments, then a restart and a check that nothing
acknowledged was lost, duplicated, torn or brought back from the dead.

Run by hand from the checkout root::

    python -m tests.crashharness --rounds 30 --seed 1234 [--clients 4]

It prints the seed first and a summary line last, e.g.::

    rounds=30 acknowledged=2113 deleted=640 lost=0 duplicated=0 resurrected=0 torn=0 ...

and exits non-zero on any violation.  C{tests/test_crash.py} imports it.

Each round, on one spool directory kept across rounds:

  1. a server is running (started in round 1, restarted after each kill);
  2. several client threads send messages (small ones, one-line ones and some
     of a few megabytes, so that appends really tear) to a few users, and read
     and delete some, recording exactly which deliveries and deletes were
     acknowledged (C{+OK} after the final C{.}, C{+OK} to C{DELM});
  3. the server gets SIGKILL: after a random delay, or the moment a spool
     file starts growing under a large delivery (a torn append), or the
     moment an expunge is under way;
  4. the spool files are read with L{mailbox.mbox} as the crash left them
     (for the figures only: a torn tail is expected here);
  5. the server is restarted and every mailbox is read through the protocol
     (C{READM} to the end), then a sentinel message is sent, read and deleted
     so that the session's end rewrites the file, and the file is read again
     with L{mailbox.mbox}, which must show exactly the messages C{READM} did.

Every message body is generated from a unique marker (its first line), so a
message read back is checked byte for byte.  Acknowledged messages must be
there exactly once; messages in flight at the kill may be there or not, but
whole; an acknowledged delete must stay done; a message once seen to be
gone must not come back.
"""

import argparse
import hashlib
import mailbox
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

from tests.serverprocess import (
    ClientError,
    ConnectionClosed,
    LineClient,
    ServerProcess,
    ServerProcessError,
    stuffBody,
    twistdEnvironment,
    CHECKOUT,
)

#: Bodies bigger than this are deleted at each verification, to keep the
#: spool (and so the time of a round) bounded.
BIG = 100 * 1024

#: At most this many small messages are kept per mailbox across rounds.
KEEP_PER_USER = 120

#: Bounds of one round.
TRAFFIC_SECONDS = (0.2, 1.2)
MAX_OPS_PER_CLIENT = 400
JOIN_TIMEOUT = 60.0
#: A verification reply slower than this is a failure (a mailbox the
#: restarted server cannot lock answers only after its 20 s lock deadline).
VERIFY_TIMEOUT = 15.0
#: How long after a restart a torn append may stay visible in a file.
START_REPAIR_TIMEOUT = 5.0

class HarnessClient(LineClient):
    """
    A line-protocol client for which the server's notice that it is
    stopping (a worker whose supervisor was killed stops cleanly) ends the
    connection, as the close that follows it does.
    """

    def readLine(self, deadline=None):
        line = LineClient.readLine(self, deadline)
        if line.startswith(b"-ERR server stopping"):
            raise ConnectionClosed(line.decode("ascii", "replace"))
        return line


_MARKER = re.compile(rb"\Amarker ([A-Za-z0-9-]+)\n")
_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
_SHAPE = re.compile(r"-L(\d+)-W(\d+)-[0-9a-f]{8}\Z")


# -- message bodies


def makeMarker(kind, tag, lines=0, width=0, rng=random):
    """
    A unique marker.  C{kind}: C{M} a multi-line body, C{O} a one-line body,
    C{W} a body written by another mail tool (no C{>From} line, which the
    older mboxo dialect of other tools cannot keep).
    """
    return "{}-{}-L{}-W{}-{:08x}".format(kind, tag, lines, width, rng.getrandbits(32))


def makeBody(marker):
    """
    The body a marker stands for: its first line is C{marker <marker>};
    lines that exercise mboxrd quoting, dot-stuffing and 8-bit bytes; then
    filler lines; then an end line, so that a torn body never matches.

    @type marker: L{str}
    @rtype: L{bytes} (LF line endings)
    """
    m = marker.encode("ascii")
    kind = marker[0]
    if kind == "O":
        return b"marker " + m + b"\n"
    shape = _SHAPE.search(marker)
    if shape is None:
        raise ValueError("not a marker: {!r}".format(marker))
    lines, width = int(shape.group(1)), int(shape.group(2))
    out = [
        b"marker " + m,
        b"From me " + m,
        b".leading dot",
        b".",
        b"..two dots",
        b"caf\xc3\xa9 8-bit \xff\xfe\x80 bytes",
        b"",
        b"after an empty line \t ",
    ]
    if kind == "M":
        out.append(b">From already quoted")
    for i in range(lines):
        h = hashlib.blake2b(m + b":%d" % (i,), digest_size=16).hexdigest().encode()
        out.append(b"%06d " % (i,) + (h * (width // 32 + 1))[:width])
    out.append(b"end " + m)
    return b"\n".join(out) + b"\n"


def quoteFrom(body):
    """
    mboxrd quoting of a body, as it must look in a spool file.
    """
    return _QUOTE.sub(rb">\1", body)


def splitMessage(text):
    """
    C{(headers, body)} of RFC 5322 text with LF line endings.
    """
    i = text.find(b"\n\n")
    if i == -1:
        return text, b""
    return text[: i + 1], text[i + 2 :]


def header(headers, name):
    """
    The value of the first header C{name} (bytes, unfolded), or L{None}.
    """
    prefix = name.lower().encode("ascii") + b":"
    for line in headers.split(b"\n"):
        if line.lower().startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def identify(body, quoted=False):
    """
    The marker of a body and whether the body is exactly what the marker
    stands for.

    @return: C{(marker or None, intact)}
    """
    match = _MARKER.match(body)
    if match is None:
        return None, False
    marker = match.group(1).decode("ascii")
    try:
        expected = makeBody(marker)
    except (ValueError, IndexError):
        return marker, False
    if quoted:
        expected = quoteFrom(expected)
    return marker, body == expected


# -- what was acknowledged


class Ledger:
    """
    What the clients were told, and what the last verification saw.
    Thread-safe.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {}  # marker -> receiver: every delivery attempted
        self.acked = {}  # marker -> receiver: +OK after the final "."
        self.refused = {}  # marker -> reply: -ERR after the final "."
        self.deleteAcked = {}  # marker -> monotonic time of the +OK
        self.deleteMaybe = set()  # DELM sent, no reply (the server died)
        self.present = {}  # marker -> user: seen at the last verification
        self.gone = set()  # known not to be in the store any more
        self.violations = []  # (kind, text)
        self.counts = {
            "lost": 0,
            "duplicated": 0,
            "resurrected": 0,
            "torn": 0,
            "misplaced": 0,
            "unknown": 0,
            "unexpected": 0,
            "emptyLocks": 0,
            "unrepairedAtStart": 0,
            "deletedTwice": 0,
            "logErrors": 0,
        }
        self.info = {
            "inflight": 0,
            "inflightKept": 0,
            "tornOnDisk": 0,
            "staleLocks": 0,
            "repaired": 0,
            "killedMidGrowth": 0,
            "killedMidExpunge": 0,
        }

    def violation(self, kind, text):
        with self.lock:
            self.counts[kind] += 1
            self.violations.append((kind, text))

    def sending(self, marker, receiver):
        with self.lock:
            self.sent[marker] = receiver

    def deliveryAcknowledged(self, marker):
        with self.lock:
            self.acked[marker] = self.sent[marker]

    def deliveryRefused(self, marker, reply):
        with self.lock:
            self.refused[marker] = reply

    def deleting(self, marker):
        with self.lock:
            self.deleteMaybe.add(marker)

    def deleteAcknowledged(self, marker, where="?"):
        with self.lock:
            self.deleteMaybe.discard(marker)
            twice = marker in self.deleteAcked
            self.deleteAcked.setdefault(marker, time.monotonic())
        if twice:
            # DELM of a message someone else already deleted must fail.
            self.violation(
                "deletedTwice", "{}: a second DELM of {} was acknowledged".format(where, marker)
            )

    def deleteRefused(self, marker):
        with self.lock:
            self.deleteMaybe.discard(marker)

    def checkSeen(self, user, text, readSentAt, where):
        """
        Check a message a client read while traffic runs.

        @return: its marker (or L{None} if it has none).
        """
        headers, body = splitMessage(text)
        marker, intact = identify(body)
        if marker is None or not intact:
            self.violation(
                "torn",
                "{}: {} shows a message that is not whole: marker {!r}, {} bytes, "
                "starts {!r}".format(where, user, marker, len(text), text[:200]),
            )
            return marker
        with self.lock:
            known = marker in self.sent or marker in self.present
            deletedAt = self.deleteAcked.get(marker)
            gone = marker in self.gone
            receiver = self.sent.get(marker) or self.present.get(marker)
        if not known and not marker.startswith("W-"):
            self.violation("unknown", "{}: {} shows unknown {}".format(where, user, marker))
        elif receiver is not None and receiver != user:
            self.violation(
                "misplaced",
                "{}: {} shows {} sent to {}".format(where, user, marker, receiver),
            )
        if deletedAt is not None and deletedAt < readSentAt:
            self.violation(
                "resurrected",
                "{}: {} shows {}, deleted (acknowledged) {:.3f}s before the READM".format(
                    where, user, marker, readSentAt - deletedAt
                ),
            )
        elif gone:
            self.violation(
                "resurrected",
                "{}: {} shows {}, which an earlier check found gone".format(
                    where, user, marker
                ),
            )
        return marker


# -- clients


class Client(threading.Thread):
    """
    One client connection doing random work until told to stop, the server
    dies, or C{maxOps} operations are done.
    """

    def __init__(
        self,
        name,
        port,
        users,
        ledger,
        rng,
        stop,
        spool,
        tag,
        bigProbability=0.15,
        bigLines=(1000, 3000),
        maxOps=MAX_OPS_PER_CLIENT,
        announce=None,
    ):
        threading.Thread.__init__(self, name=name, daemon=True)
        self.port = port
        self.users = users
        self.ledger = ledger
        self.rng = rng
        self.stop = stop
        self.spool = spool
        self.tag = tag
        self.bigProbability = bigProbability
        self.bigLines = bigLines
        self.maxOps = maxOps
        self.announce = announce
        self.selected = None
        self.seq = 0
        self.ops = 0
        self.ended = None  # why the loop ended
        self.unexpected = []  # replies that the protocol does not allow here

    def run(self):
        client = None
        try:
            client = HarnessClient("127.0.0.1", self.port, timeout=20)
            greeting = client.readLine()
            if not greeting.startswith(b"+OK"):
                self.unexpected.append("greeting " + repr(greeting))
                return
            while self.ops < self.maxOps and not self.stop.is_set():
                self.ops += 1
                if self.rng.random() < 0.6:
                    self.sendOne(client)
                else:
                    self.readSome(client)
            self.ended = "done"
            client.command(b"QUIT")
        except (ClientError, OSError) as e:
            self.ended = "connection: {}".format(e)
        finally:
            if client is not None:
                client.close()

    def _select(self, client, user):
        reply = client.command(b"USER " + user.encode("ascii"))
        if not reply.startswith(b"+OK"):
            self.unexpected.append("USER {}: {!r}".format(user, reply))
            self.selected = None
            return False
        self.selected = user
        return True

    def sendOne(self, client):
        rng = self.rng
        if self.selected is None and not self._select(client, rng.choice(self.users)):
            return
        receiver = rng.choice(self.users)
        self.seq += 1
        tag = "{}-s{}".format(self.tag, self.seq)
        big = rng.random() < self.bigProbability
        if big:
            marker = makeMarker("M", tag, rng.randint(*self.bigLines), 1000, rng)
        elif rng.random() < 0.2:
            marker = makeMarker("O", tag, rng=rng)
        else:
            marker = makeMarker("M", tag, rng.randint(0, 30), rng.randint(1, 200), rng)
        body = makeBody(marker)
        r = receiver.encode("ascii")
        self.ledger.sending(marker, receiver)
        if marker[0] == "O":
            reply = client.command(b"SEND " + r + b" " + body.rstrip(b"\n"))
        else:
            first = client.command(b"SEND " + r)
            if not first.startswith(b"+OK"):
                self.unexpected.append("SEND {}: {!r}".format(receiver, first))
                self.ledger.deliveryRefused(marker, first)
                return
            client.sendall(stuffBody(body))
            if big and self.announce is not None:
                try:
                    size = os.stat(os.path.join(self.spool, receiver)).st_size
                except OSError:
                    size = None
                self.announce(receiver, size)
            client.sendall(b".\r\n")
            reply = client.readReply()
        if reply.startswith(b"+OK"):
            self.ledger.deliveryAcknowledged(marker)
        else:
            self.unexpected.append("delivery of {}: {!r}".format(marker, reply))
            self.ledger.deliveryRefused(marker, reply)

    def readSome(self, client):
        rng = self.rng
        user = rng.choice(self.users)
        if not self._select(client, user):
            return
        for _ in range(rng.randint(1, 6)):
            if self.stop.is_set():
                return
            sentAt = time.monotonic()
            text = client.readMessage()
            if text is None:
                if b"No More Mail" not in client.lastStatus:
                    self.unexpected.append("READM: {!r}".format(client.lastStatus))
                break
            marker = self.ledger.checkSeen(user, text, sentAt, self.name)
            if marker is not None and rng.random() < 0.5:
                self.ledger.deleting(marker)
                reply = client.command(b"DELM")
                if reply.startswith(b"+OK"):
                    self.ledger.deleteAcknowledged(marker, self.name)
                else:
                    # Another session deleted it first: not ours.
                    self.ledger.deleteRefused(marker)
                    if b"no current message" not in reply:
                        self.unexpected.append("DELM: {!r}".format(reply))
        how = rng.random()
        if how < 0.5:
            reply = client.command(b"DONEU")
            if not reply.startswith(b"+OK"):
                self.unexpected.append("DONEU: {!r}".format(reply))
            self.selected = None
        elif how < 0.7:
            self._select(client, rng.choice(self.users))


# -- verification


def readMailboxFile(path, quoted=True):
    """
    The messages of a spool file as the stdlib L{mailbox.mbox} sees them.

    @return: a L{list} of C{(marker or None, intact, headers, raw bytes)}.
    """
    if not os.path.exists(path):
        return []
    box = mailbox.mbox(path, create=False)
    try:
        found = []
        for key in box.keys():
            raw = box.get_bytes(key)
            headers, body = splitMessage(raw)
            marker, intact = identify(body, quoted=quoted)
            found.append((marker, intact, headers, raw))
        return found
    finally:
        box.close()


class Harness:
    """
    The rounds, on one spool directory.
    """

    def __init__(
        self,
        workdir,
        seed,
        clients=4,
        users=3,
        out=sys.stdout,
        bigProbability=0.15,
        timeLimit=None,
        server=None,
        workers=1,
    ):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        if server is None:
            server = ServerProcess(
                os.path.join(self.workdir, "spool"),
                logPath=os.path.join(self.workdir, "twistd.log"),
                workers=workers,
            )
        self.server = server
        self.spool = server.spool
        self.seed = seed
        self.rng = random.Random(seed)
        self.nclients = clients
        if isinstance(users, int):
            users = ["user{}".format(i) for i in range(users)]
        self.users = list(users)
        self.out = out
        self.bigProbability = bigProbability
        self.timeLimit = timeLimit
        self.ledger = Ledger()
        self.rounds = 0
        self.deleted = 0
        # With --workers: worker starts logged since the server's start.
        self.workerStarts = server.workers

    def say(self, text):
        print(text, file=self.out)
        self.out.flush()

    def close(self):
        self.server.close()

    # -- the whole run

    def run(self, rounds):
        started = time.monotonic()
        self.say(
            "crashharness: seed={} rounds={} clients={} users={} spool={}".format(
                self.seed, rounds, self.nclients, len(self.users), self.spool
            )
        )
        try:
            self.server.start()
            self.addUsers()
            for number in range(1, rounds + 1):
                try:
                    self.round(number)
                except (ClientError, ServerProcessError) as e:
                    # The server refused or failed to serve the check: say
                    # so, and stop (the spool is kept for a look).
                    self.ledger.violation(
                        "unexpected",
                        "round {}: verification failed: {}".format(number, e),
                    )
                    self.rounds = number
                    break
                self.rounds = number
                if (
                    self.timeLimit is not None
                    and time.monotonic() - started > self.timeLimit
                    and number < rounds
                ):
                    self.say(
                        "time limit of {}s reached after {} rounds".format(
                            self.timeLimit, number
                        )
                    )
                    break
            code = self.server.stop() if self.server.running() else 0
            # twistd ends itself with the signal it got: -SIGTERM is normal.
            if code not in (0, -signal.SIGTERM):
                self.ledger.violation(
                    "logErrors", "server exited with {} on SIGTERM".format(code)
                )
            self.checkLog()
        finally:
            self.server.close()
        self.say(self.summary())
        for kind, text in self.ledger.violations[:50]:
            self.say("VIOLATION {}: {}".format(kind, text))
        return self.ok()

    def ok(self):
        return not self.ledger.violations

    def summary(self):
        counts = self.ledger.counts
        info = self.ledger.info
        return (
            "rounds={} acknowledged={} deleted={} lost={} duplicated={} "
            "resurrected={} torn={} misplaced={} unknown={} unexpected={} "
            "emptyLocks={} deletedTwice={} logErrors={} "
            "inflight={} inflightKept={} tornOnDisk={} repaired={} "
            "unrepairedAtStart={} staleLocks={} killedMidGrowth={} "
            "killedMidExpunge={} seed={}".format(
                self.rounds,
                len(self.ledger.acked),
                len(self.ledger.deleteAcked),
                counts["lost"],
                counts["duplicated"],
                counts["resurrected"],
                counts["torn"],
                counts["misplaced"],
                counts["unknown"],
                counts["unexpected"],
                counts["emptyLocks"],
                counts["deletedTwice"],
                counts["logErrors"],
                info["inflight"],
                info["inflightKept"],
                info["tornOnDisk"],
                info["repaired"],
                counts["unrepairedAtStart"],
                info["staleLocks"],
                info["killedMidGrowth"],
                info["killedMidExpunge"],
                self.seed,
            )
        )

    def addUsers(self):
        with self.server.connect() as client:
            for user in self.users:
                reply = client.command(b"ADDU " + user.encode("ascii"))
                if not reply.startswith(b"+OK") and b"exists" not in reply:
                    raise ClientError("ADDU {}: {!r}".format(user, reply))

    # -- one round

    def round(self, number):
        rng = self.rng
        stop = threading.Event()
        bigSends = []
        bigLock = threading.Lock()

        def announce(receiver, size):
            with bigLock:
                bigSends.append((receiver, size))

        threads = [
            Client(
                "r{}c{}".format(number, i),
                self.server.port,
                self.users,
                self.ledger,
                random.Random(rng.getrandbits(64)),
                stop,
                self.spool,
                "r{}c{}".format(number, i),
                bigProbability=self.bigProbability,
                announce=announce,
            )
            for i in range(self.nclients)
        ]
        sentBefore = set(self.ledger.sent)
        for t in threads:
            t.start()
        how = self.kill(rng, bigSends, bigLock)
        stop.set()
        for t in threads:
            t.join(JOIN_TIMEOUT)
            if t.is_alive():
                self.ledger.violation("unexpected", "client {} hung".format(t.name))
        for t in threads:
            for text in t.unexpected:
                # Replies the protocol does not allow in this state.
                self.ledger.violation("unexpected", "{}: {}".format(t.name, text))
        newSent = set(self.ledger.sent) - sentBefore
        inflight = {m for m in newSent if m not in self.ledger.acked}
        self.ledger.info["inflight"] += len(inflight)
        self.inspectCrashedFiles()
        if self.server.running():
            # One worker was killed: the supervisor starts it again.
            self.workerStarts += 1
            self.server.waitForWorkers(count=self.workerStarts)
        else:
            self.server.start()
            self.workerStarts = self.server.workers
        self.inspectFilesAtStart()
        seen = self.verify(number, newSent)
        self.ledger.info["inflightKept"] += len(inflight & set(seen))
        self.say(
            "round {}: kill={} ops={} acknowledged={} inflight={} deletes={} "
            "present={}".format(
                number,
                how,
                sum(t.ops for t in threads),
                len(newSent) - len(inflight),
                len(inflight),
                len(self.ledger.deleteAcked),
                len(self.ledger.present),
            )
        )

    def kill(self, rng, bigSends, bigLock):
        """
        Wait for the moment, then SIGKILL the server (with --workers: one
        worker, or every process).

        @return: how the moment was chosen.
        """
        pid = self.server.pid
        oneWorker = self.server.workers > 1 and rng.random() < 0.5
        if oneWorker:
            pid = rng.choice(self.server.workerPids())
        mode = rng.choices(["random", "growth", "expunge"], [0.35, 0.45, 0.2])[0]
        delay = rng.uniform(*TRAFFIC_SECONDS)
        start = time.monotonic()
        if mode == "random":
            time.sleep(delay)
        elif mode == "growth":
            # The moment a spool file grows under a large delivery that
            # starts after half the delay.
            time.sleep(delay / 2)
            with bigLock:
                first = len(bigSends)
            deadline = start + delay + 2.0
            watched = None
            while time.monotonic() < deadline and watched is None:
                with bigLock:
                    if len(bigSends) > first:
                        watched = bigSends[-1]
                if watched is None:
                    time.sleep(0.002)
            if watched is not None and watched[1] is not None:
                # Small deliveries (a few kB) also grow the file: wait for a
                # growth only a large one makes, and kill at once.
                path = os.path.join(self.spool, watched[0])
                # Poll often: other threads hold the GIL for up to 5 ms at a
                # time, longer than a large append takes.
                interval = sys.getswitchinterval()
                sys.setswitchinterval(0.0001)
                try:
                    while time.monotonic() < deadline:
                        try:
                            if os.stat(path).st_size > watched[1] + 16384:
                                break
                        except OSError:
                            break
                    os.kill(pid, signal.SIGKILL)
                finally:
                    sys.setswitchinterval(interval)
                self.ledger.info["killedMidGrowth"] += 1
        else:
            # The moment an expunge is under way (its temporary file exists).
            deadline = start + delay + 1.5
            found = False
            while time.monotonic() < deadline and not found:
                try:
                    found = any(n.endswith(".new") for n in os.listdir(self.spool))
                except OSError:
                    pass
            if found:
                os.kill(pid, signal.SIGKILL)
                self.ledger.info["killedMidExpunge"] += 1
        if oneWorker:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return mode + "/worker"
        self.server.kill()
        return mode

    def inspectCrashedFiles(self):
        """
        The spool as the crash left it, for the figures: torn tails and
        stale locks are expected here, not violations.
        """
        for user in self.users:
            for marker, intact, headers, raw in readMailboxFile(
                os.path.join(self.spool, user)
            ):
                if not intact:
                    self.ledger.info["tornOnDisk"] += 1
            lock = os.path.join(self.spool, user + ".lock")
            try:
                size = os.stat(lock).st_size
            except FileNotFoundError:
                continue
            self.ledger.info["staleLocks"] += 1
            if size == 0:
                # The server writes its pid into its dot-lock; one killed
                # between creating the file and writing it leaves an empty
                # lock that nobody can tell from a live one: the mailbox is
                # refused ("locked by another program") for minutes.  Count
                # it, and remove it as an operator would, so the run goes on.
                self.ledger.violation(
                    "emptyLocks",
                    "the crash left an empty dot-lock {}.lock: the restarted "
                    "server would refuse the mailbox".format(user),
                )
                os.unlink(lock)

    def inspectFilesAtStart(self):
        """
        The spool once the restarted server accepts connections, before any
        client touches a mailbox: a torn message still visible to other mail
        tools after a few seconds is counted (the contract says it is
        repaired at start).
        """
        deadline = time.monotonic() + START_REPAIR_TIMEOUT
        while True:
            torn = 0
            for user in self.users:
                for marker, intact, headers, raw in readMailboxFile(
                    os.path.join(self.spool, user)
                ):
                    if not intact:
                        torn += 1
            if not torn or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if torn:
            self.ledger.violation(
                "unrepairedAtStart",
                "{} torn message(s) still in the spool files {}s after the restart".format(
                    torn, START_REPAIR_TIMEOUT
                ),
            )

    def verify(self, number, newSent):
        """
        Read every mailbox through the protocol and the files, compare with
        the ledger, and make the result the new expected state.

        @return: the markers seen, each mapped to its user.
        """
        ledger = self.ledger
        seenAll = {}
        for user in self.users:
            seen, deletedNow = self.verifyMailbox(number, user)
            remaining = [m for m in seen if m not in deletedNow]
            self.checkFile(user, remaining)
            for marker in seen:
                seenAll.setdefault(marker, user)
            with ledger.lock:
                for marker in deletedNow:
                    ledger.deleteAcked.setdefault(marker, time.monotonic())
        with ledger.lock:
            deleteAcked = set(ledger.deleteAcked)
            deleteMaybe = set(ledger.deleteMaybe)
            previous = dict(ledger.present)
            mustHave = {
                m: u for m, u in previous.items() if m not in deleteAcked | deleteMaybe
            }
            for m in newSent:
                if m in ledger.acked and m not in deleteAcked | deleteMaybe:
                    mustHave[m] = ledger.acked[m]
        for marker, user in sorted(mustHave.items()):
            if marker not in seenAll:
                ledger.violation(
                    "lost",
                    "round {}: {} lost {} (acknowledged, never deleted)".format(
                        number, user, marker
                    ),
                )
        with ledger.lock:
            newPresent = {}
            for marker, user in seenAll.items():
                if marker.startswith("S-") or marker in ledger.deleteAcked:
                    continue
                newPresent[marker] = user
            for marker in set(previous) | newSent | deleteMaybe:
                if marker not in newPresent:
                    ledger.gone.add(marker)
            ledger.present = newPresent
            ledger.deleteMaybe = set()
        return seenAll

    def verifyMailbox(self, number, user):
        """
        READM through one mailbox, after sending it a sentinel; delete the
        sentinel and the large messages; end the session (which rewrites the
        file).

        @return: C{(markers in the order seen, set of markers deleted now)}
        """
        ledger = self.ledger
        rng = self.rng
        sentinel = "S-r{}-{}-{:08x}".format(number, user, rng.getrandbits(32))
        u = user.encode("ascii")
        seen = []
        deletedNow = set()
        counts = {}
        with self.server.connect(timeout=VERIFY_TIMEOUT) as client:
            reply = client.command(b"USER " + u)
            if not reply.startswith(b"+OK"):
                raise ClientError("USER {}: {!r}".format(user, reply))
            reply = client.command(b"SEND " + u + b" marker " + sentinel.encode())
            if not reply.startswith(b"+OK"):
                raise ClientError("SEND sentinel: {!r}".format(reply))
            small = 0
            for _ in range(100000):
                text = client.readMessage()
                if text is None:
                    if b"No More Mail" not in client.lastStatus:
                        raise ClientError("READM: {!r}".format(client.lastStatus))
                    break
                headers, body = splitMessage(text)
                if body == b"marker " + sentinel.encode() + b"\n":
                    marker, intact = sentinel, True
                else:
                    marker, intact = identify(body)
                if marker is None or not intact:
                    ledger.violation(
                        "torn",
                        "round {}: READM of {} shows a message that is not whole: "
                        "marker {!r}, {} bytes, starts {!r}".format(
                            number, user, marker, len(text), text[:200]
                        ),
                    )
                    continue
                counts[marker] = counts.get(marker, 0) + 1
                if counts[marker] == 2:
                    ledger.violation(
                        "duplicated",
                        "round {}: {} shows {} more than once".format(
                            number, user, marker
                        ),
                    )
                seen.append(marker)
                self.checkSeenAfterCrash(number, user, marker, headers)
                drop = marker == sentinel or len(body) > BIG
                if not drop and marker not in deletedNow:
                    small += 1
                    drop = small > KEEP_PER_USER and rng.random() < 0.5
                if drop:
                    reply = client.command(b"DELM")
                    if not reply.startswith(b"+OK"):
                        raise ClientError("DELM of {}: {!r}".format(marker, reply))
                    deletedNow.add(marker)
            reply = client.command(b"DONEU")
            if not reply.startswith(b"+OK"):
                raise ClientError("DONEU: {!r}".format(reply))
        if sentinel not in counts:
            ledger.violation(
                "lost", "round {}: {} lost the sentinel {}".format(number, user, sentinel)
            )
        return seen, deletedNow

    def checkSeenAfterCrash(self, number, user, marker, headers):
        ledger = self.ledger
        if marker.startswith("S-") or marker.startswith("W-"):
            return
        with ledger.lock:
            deleted = marker in ledger.deleteAcked
            gone = marker in ledger.gone
            receiver = ledger.sent.get(marker) or ledger.present.get(marker)
        if deleted:
            ledger.violation(
                "resurrected",
                "round {}: {} shows {}, whose delete was acknowledged".format(
                    number, user, marker
                ),
            )
        elif gone:
            ledger.violation(
                "resurrected",
                "round {}: {} shows {}, found gone by an earlier check".format(
                    number, user, marker
                ),
            )
        if receiver is None:
            ledger.violation(
                "unknown", "round {}: {} shows unknown {}".format(number, user, marker)
            )
        elif receiver != user:
            ledger.violation(
                "misplaced",
                "round {}: {} shows {} sent to {}".format(number, user, marker, receiver),
            )
        to = header(headers, "To")
        if receiver is not None and to != "{}@localhost".format(user).encode():
            ledger.violation(
                "misplaced",
                "round {}: {} has {} with To: {!r}".format(number, user, marker, to),
            )

    def checkFile(self, user, expected):
        """
        After the session that deleted ended, the spool file holds exactly
        the messages left, each whole, in the order READM showed them.
        """
        found = readMailboxFile(os.path.join(self.spool, user))
        markers = []
        for marker, intact, headers, raw in found:
            if marker is None or not intact:
                self.ledger.violation(
                    "torn",
                    "file {}: mailbox.mbox sees a message that is not whole: "
                    "marker {!r}, {} bytes, starts {!r}".format(
                        user, marker, len(raw), raw[:200]
                    ),
                )
                continue
            markers.append(marker)
        if markers != list(expected):
            extra = sorted(set(markers) - set(expected))
            missing = sorted(set(expected) - set(markers))
            dup = sorted({m for m in markers if markers.count(m) > 1})
            if dup:
                self.ledger.violation(
                    "duplicated", "file {}: {} more than once".format(user, dup[:5])
                )
            if extra:
                self.ledger.violation(
                    "resurrected",
                    "file {}: holds {} message(s) READM did not show or that were "
                    "deleted: {}".format(user, len(extra), extra[:5]),
                )
            if missing:
                self.ledger.violation(
                    "lost",
                    "file {}: lacks {} message(s) READM showed: {}".format(
                        user, len(missing), missing[:5]
                    ),
                )
            if not (dup or extra or missing):
                self.ledger.violation(
                    "misplaced", "file {}: messages in another order than READM".format(user)
                )

    def checkLog(self):
        log = self.server.log()
        self.ledger.info["repaired"] = log.count("of an interrupted delivery")
        for needle in ("Traceback", "Unhandled error"):
            if needle in log:
                i = log.index(needle)
                self.ledger.violation(
                    "logErrors",
                    "server log has {!r}: {}".format(needle, log[max(0, i - 300) : i + 1500]),
                )


# -- another mail tool writing into the spool


def mboxWriter(spool, users, count, seed, tag="w", out=sys.stdout, timeout=60.0):
    """
    Append C{count} messages to the users' spool files the way a careful
    mail tool using the stdlib does: C{mailbox.mbox}, C{lock()} (fcntl and
    dot-lock), check that the file locked is still the one at the path (the
    server may have replaced it by an expunge meanwhile), C{add()},
    C{flush()} (fsync), C{unlock()}.  Prints C{ACK <user> <marker>} after
    each message is flushed.

    @return: the list of C{(user, marker)} acknowledged.
    """
    rng = random.Random(seed)
    acked = []
    deadline = time.monotonic() + timeout
    for i in range(count):
        user = rng.choice(users)
        marker = makeMarker("W", "{}-{}".format(tag, i), rng.randint(0, 20), 60, rng)
        message = (
            "From: writer@example.net\nTo: {}@localhost\nSubject: from another tool {}\n\n".format(
                user, i
            ).encode("ascii")
            + makeBody(marker)
        )
        path = os.path.join(spool, user)
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError("could not lock {} within {}s".format(path, timeout))
            box = mailbox.mbox(path, create=False)
            try:
                box.lock()
            except mailbox.ExternalClashError:
                box.close()
                time.sleep(rng.uniform(0.001, 0.01))
                continue
            try:
                if os.fstat(box._file.fileno()).st_ino != os.stat(path).st_ino:
                    continue  # replaced while we waited for the lock
                box.add(message)
                box.flush()
                break
            finally:
                box.unlock()
                box.close()
        acked.append((user, marker))
        print("ACK {} {}".format(user, marker), file=out, flush=True)
    return acked


def startMboxWriter(spool, users, count, seed, tag="w"):
    """
    L{mboxWriter} in a child process (stdout piped).
    """
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.crashharness",
            "--mbox-writer",
            spool,
            "--users",
            ",".join(users),
            "--count",
            str(count),
            "--seed",
            str(seed),
            "--tag",
            tag,
        ],
        env=twistdEnvironment(),
        cwd=CHECKOUT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tests.crashharness",
        description="SIGKILL a simplemail server under load, restart it, check the spool.",
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--users", default="3", help="how many users (or, with "
                        "--mbox-writer, a comma-separated list)")
    parser.add_argument("--workdir", default=None,
                        help="where the spool and the log go (default: a new "
                        "temporary directory, removed unless there were violations)")
    parser.add_argument("--workers", type=int, default=1,
                        help="run the server with --workers N (kills hit one "
                        "worker or every process)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="stop after the round that passes this many seconds")
    parser.add_argument("--mbox-writer", metavar="SPOOL", default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="w", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    if args.mbox_writer is not None:
        mboxWriter(args.mbox_writer, args.users.split(","), args.count, args.seed, args.tag)
        return 0
    import shutil
    import tempfile

    workdir = args.workdir or tempfile.mkdtemp(prefix="crashharness-")
    harness = Harness(workdir, args.seed, clients=args.clients, users=int(args.users),
                      timeLimit=args.time_limit, workers=args.workers)
    try:
        ok = harness.run(args.rounds)
    finally:
        harness.close()
    if ok and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not ok:
        print("spool and log kept in {}".format(workdir))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
