"""
Run twistd simplemail with candidate changes patched in at run time, to
measure one before anyone edits twisted_mail/.  Not used by default: pass it
to load.py, scale.py or bigmessage.py with --twistd-wrapper, and name the
patches in the environment variable SM_PATCH (comma-separated):

    SM_PATCH=nolog .venv/bin/python benchmarks/load.py \
        --servers simplemail,simplemail-smtp --rounds 1 \
        --twistd-wrapper benchmarks/trypatches.py

Patches (each replaces something of twisted_mail by name; one whose target
is gone is reported on stderr and skipped; bulkbody, blockquote, smtpnopause
and spoolpool copy the tree's code of the methods they replace, as of
f5570f1: check them against the tree before trusting a measurement):

  nolog        the server's, the SMTP ingress's and the spool's Loggers drop
               their events (the cost of logging every connection and
               delivery)
  fastids      Message-IDs and SMTP transaction ids from a random prefix and
               a counter instead of uuid4() (a getrandom call and a UUID
               object each); Date:, From_-line and Received: dates formatted
               once a second
  bulkbody     the line protocol takes a multi-line SEND's body out of its
               input in one piece (bytes.replace for CRLF and dot-stuffing)
               instead of line by line, when all of it is there
  blockquote   each 64 KiB block of a multi-line SEND's body is mboxrd-quoted
               as soon as it is full, while the rest arrives, instead of all
               blocks at once after the "." line (a 10 MiB body: tens of ms
               in one go on the reactor thread), and the unquoted block is
               dropped at once (one copy of the body less at the peak)
  smtpnopause  the SMTP ingress holds input while a reply is pending without
               pausing the transport (as the line protocol does since
               345e321): two epoll_ctl calls fewer per message
  pool<N>      the reactor's thread pool has at most N threads (default 10)
  spoolpool<N> mailbox jobs (appends, reads, deletes, expunges) run in a
               thread pool of their own of N threads; the reactor's pool
               keeps the rest (LSTU's listing, ADDU, the first check of a
               user), which then no longer waits behind appends
  mailthreads<N>  the mailbox thread pool (spool.mailboxThreadPool) has N
               threads instead of the tree's default
  switch<MS>   sys.setswitchinterval(MS / 1000) (GIL hand-over interval)
  gcstats      print the garbage collector's pauses at shutdown (stderr)
  batchstats   print, at shutdown (stderr), the group commits' batch sizes,
               how long each batch waited for the mailbox thread, and how
               long the thread took to build, write and sync it

The fixes this script used to offer are in the tree since commit 345e321
("Performance fixes from the benchmarks"): nodelay, usercache, fastquote
and linearindex.  Naming one is harmless (it is reported and skipped), so
old command lines still run, and measure the tree as it is.
"""

import os
import sys

# "none" (or nothing) runs the tree as it is, through the same start-up path.
patches = [p for p in os.environ.get("SM_PATCH", "").split(",") if p and p != "none"]

#: Patches that are now the tree's own code, and the commit that made them so.
FIXED = {
    "nodelay": "345e321",
    "usercache": "345e321",
    "fastquote": "345e321",
    "linearindex": "345e321",
    # Cheap ids and dates, and whole bodies.
    "fastids": "42c63c1",
    "bulkbody": "631663b",
}


class _FastUUID:
    """
    Stands for the uuid module in twisted_mail.message and twisted_mail.smtp:
    uuid4().hex is 32 hex digits, its first 16 (all that smtp.py keeps of
    some) a counter from a random start, the rest drawn once per process:
    unique in this process, and unlikely to repeat another's, without a
    getrandom call and a UUID object per message.
    """

    def __init__(self):
        import itertools

        self._count = itertools.count(int.from_bytes(os.urandom(8), "big"))
        self._suffix = os.urandom(8).hex()

    def uuid4(self):
        return self

    @property
    def hex(self):
        return "{:016x}{}".format(next(self._count) & 0xFFFFFFFFFFFFFFFF, self._suffix)


def _perSecond(fn):
    """
    C{fn(when, ...)} remembered for the last whole second it was called for.
    """
    cache = {}

    def cached(when, *args, **kwargs):
        key = (int(when), args, tuple(sorted(kwargs.items())))
        if key[0] != cache.get("second"):
            cache.clear()
            cache["second"] = key[0]
        value = cache.get(key)
        if value is None:
            value = cache[key] = fn(int(when), *args, **kwargs)
        return value

    return cached


def patchFastIds():
    """
    Message-IDs and transaction ids from L{_FastUUID}; dates formatted once a
    second (Date:, the From_ line, Received:).
    """
    import time
    from datetime import datetime, timezone
    from email.utils import format_datetime, formatdate

    from twisted_mail import message, smtp, spool

    ids = _FastUUID()
    message.uuid = ids
    smtp.uuid = ids
    message.formatdate = _perSecond(formatdate)
    stamp = _perSecond(lambda when: time.asctime(time.gmtime(when)).encode("ascii"))
    unsafe = message._UNSAFE

    def separatorLine(sender, when=None):
        if when is None:
            when = time.time()
        sender = unsafe.sub(b"-", sender) or b"MAILER-DAEMON"
        return b"From " + sender + b" " + stamp(when)

    message.separatorLine = separatorLine
    spool.separatorLine = separatorLine  # imported by name there
    received = _perSecond(
        lambda when: format_datetime(datetime.fromtimestamp(when, timezone.utc)))
    smtp.format_datetime = lambda dt: received(dt.timestamp())


def patchBulkBody():
    """
    The line protocol takes a multi-line SEND's body, up to its "." line,
    out of the input in one piece (CRLF to LF and dot-unstuffing with
    bytes.replace) instead of one line at a time, when all of it has
    arrived and it is shorter than a line may be; otherwise, as before.
    """
    from twisted_mail import server

    original = server.MailServerProtocol.dataReceived

    def dataReceived(self, data):
        if self._body is None or self._busyReceiving or self.paused or self._body.tooLarge:
            return original(self, data)
        buf = self._buffer + data if self._buffer else data
        if buf.startswith(b".\r\n") or buf.startswith(b".\n"):
            return original(self, data)
        end = buf.find(b"\n.\r\n")
        tail = 5
        other = buf.find(b"\n.\n")
        if other != -1 and (end == -1 or other < end):
            end, tail = other, 4
        body = self._body
        if end == -1 or end + 1 > self.MAX_LENGTH or body.size + end + 1 > body.limit:
            return original(self, data)
        text = b"\n" + buf[: end + 1]
        if b"\r\n" in text:
            text = text.replace(b"\r\n", b"\n")
        if b"\n." in text:
            text = text.replace(b"\n.", b"\n")
        text = text[1:]
        body.blocks.append(bytearray(text))
        body.size += len(text)
        self._buffer = b""
        self.resetTimeout()
        self._busyReceiving = True
        try:
            self._bodyLineReceived(b".")
        finally:
            self._busyReceiving = False
        rest = buf[end + tail:]
        if self._buffer:  # arrived meanwhile
            rest += self._buffer
        self._buffer = b""
        if rest or not self.paused:
            original(self, rest)

    server.MailServerProtocol.dataReceived = dataReceived


class _Quoted(bytes):
    """
    A block of body text already mboxrd-quoted, with LF line endings.
    """


def patchBlockQuote():
    from twisted_mail import message, server

    quoteFrom = message.quoteFrom
    normaliseBody = message.normaliseBody

    def quoteOnce(text):
        if isinstance(text, _Quoted):
            return text
        return quoteFrom(text)

    def normaliseOnce(body):
        if isinstance(body, _Quoted):
            return body
        return normaliseBody(body)

    message.quoteFrom = quoteOnce
    message.normaliseBody = normaliseOnce
    originalAdd = server._Body.add

    def add(self, line):
        blocks = self.blocks
        n = len(blocks)
        originalAdd(self, line)
        if len(self.blocks) > n and n and self.blocks is blocks:
            # blocks[n - 1] just filled up: quote it now.
            block = blocks[n - 1]
            quoted = quoteFrom(bytes(block))
            blocks[n - 1] = _Quoted(quoted)

    server._Body.add = add


def patchSmtpNoPause():
    """
    The SMTP ingress holds input while a reply is pending by not reading
    its buffer, as the line protocol now does; the transport is paused only
    when more than a command line's worth waits meanwhile (saves the two
    epoll_ctl calls of pauseProducing/resumeProducing per message).
    """
    from twisted_mail import smtp

    cls = smtp.SMTPServerProtocol
    if not hasattr(cls, "_holdUntil") or not hasattr(cls, "_resume"):
        return False
    originalData = cls.dataReceived

    def dataReceived(self, data):
        if self._paused and not self._closing():
            self._input += data
            if len(self._input) > self.maxCommandLine and not self.__dict__.get("_tpaused"):
                self._tpaused = True
                self.transport.pauseProducing()
            return
        return originalData(self, data)

    def _holdUntil(self, d):
        d.addErrback(
            lambda f: smtp.log.failure("unexpected error serving {peer}", f, peer=self.peer)
        )
        fired = []
        d.addCallback(fired.append)
        if fired or self._closing():
            return
        self._paused = True
        self.setTimeout(None)
        d.addCallback(lambda _: self._resume())

    def _resume(self):
        self._paused = False
        if self._closing():
            return
        self.setTimeout(self.timeout)
        if self.__dict__.get("_tpaused"):
            self._tpaused = False
            self.transport.resumeProducing()
        if not self._busy:
            self._processInput()

    cls.dataReceived = dataReceived
    cls._holdUntil = _holdUntil
    cls._resume = _resume
    return True


def patchSpoolPool(reactor, size):
    """
    Run the mailbox jobs of twisted_mail.spool in a thread pool of C{size}
    threads of their own.
    """
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    from twisted_mail import spool

    pool = ThreadPool(minthreads=0, maxthreads=size, name="spool")
    reactor.callWhenRunning(pool.start)
    reactor.addSystemEventTrigger("during", "shutdown", pool.stop)

    def run(self, f, *args):
        return self._lock.run(deferToThreadPool, reactor, pool, f, *args)

    def _flush(self):
        batch, self._pending = self._pending, []
        self._flushQueued = False
        records = [record for record, _ in batch]
        d = deferToThreadPool(reactor, pool, self.mbox.append, records)

        def done(result):
            for _, waiting in batch:
                waiting.callback(None)

        def failed(f):
            if not f.check(spool.errors.MailError):
                spool.log.failure("mailbox {user}: delivery failed", f, user=self.mbox.userid)
                f = spool.errors.TemporaryFailure("the mailbox could not be written")
            for _, waiting in batch:
                waiting.errback(f)

        return d.addCallbacks(done, failed)

    spool._Mailbox.run = run
    spool._Mailbox._flush = _flush


def patchBatchStats(reactor):
    """
    Measure the group commits: batch sizes, the wait for the mailbox thread
    and the time the thread spends on each batch.
    """
    import time

    from twisted_mail import spool

    sizes, waits, works = [], [], []
    take = spool._Mailbox._takeAndBuild
    flush = spool._Mailbox._flush

    def _flush(self):
        self._queuedAt = time.perf_counter()
        return flush(self)

    def _takeAndBuild(self):
        start = time.perf_counter()
        waits.append(start - self._queuedAt)
        try:
            result = take(self)
        finally:
            works.append(time.perf_counter() - start)
        sizes.append(len(result[0]))
        return result

    def report():
        def summary(label, values, scale, unit):
            if not values:
                return
            values = sorted(values)
            n = len(values)
            sys.stderr.write(
                "batchstats: {}: n={} mean={:.3f}{u} p50={:.3f}{u} p90={:.3f}{u} "
                "max={:.3f}{u}\n".format(
                    label, n, sum(values) / n * scale, values[n // 2] * scale,
                    values[n * 9 // 10] * scale, values[-1] * scale, u=unit))

        summary("batch size", sizes, 1, "")
        summary("wait for the thread", waits, 1000, " ms")
        summary("thread time per batch", works, 1000, " ms")
        sys.stderr.flush()

    spool._Mailbox._takeAndBuild = _takeAndBuild
    spool._Mailbox._flush = _flush
    reactor.addSystemEventTrigger("before", "shutdown", report)


def main():
    if sys.argv[1:2] in (["-h"], ["--help"]):
        sys.stdout.write(__doc__.lstrip())
        sys.stdout.write("\nEvery argument is passed on to twistd.\n")
        return
    # The checkout first, as common.simplemailServer's PYTHONPATH does.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    from twisted_mail import server, spool

    def missing(name):
        sys.stderr.write("trypatches: {} not applied: its target is gone\n".format(name))

    for name in patches:
        if name in FIXED:
            sys.stderr.write("trypatches: {} is in the tree since {}; nothing to patch\n".format(
                name, FIXED[name]))
            continue
        if name == "nolog":
            from twisted.logger import Logger

            from twisted_mail import smtp

            for module in (server, smtp, spool):
                module.log = Logger(observer=lambda event: None)
        elif name == "fastids":
            patchFastIds()
        elif name == "bulkbody":
            patchBulkBody()
        elif name == "blockquote":
            patchBlockQuote()
        elif name == "smtpnopause":
            if not patchSmtpNoPause():
                missing(name)
        elif name.startswith("spoolpool"):
            # Since 42c63c1 the tree runs mailbox jobs in a one-thread pool
            # of its own (spool.mailboxThreadPool); the old patch no longer
            # fits the store's code.
            sys.stderr.write(
                "trypatches: {} not applied: the tree has its own mailbox pool "
                "since 42c63c1\n".format(name)
            )
        elif name.startswith("mailthreads"):
            from twisted_mail import tap

            size = int(name[len("mailthreads"):])
            original = spool.mailboxThreadPool
            tap.mailboxThreadPool = lambda size=size: original(size)
        elif name.startswith("pool"):
            reactor.suggestThreadPoolSize(int(name[4:]))
        elif name.startswith("switch"):
            sys.setswitchinterval(float(name[6:]) / 1000.0)
        elif name == "batchstats":
            patchBatchStats(reactor)
        elif name == "gcstats":
            import gc
            import time

            state = {"start": 0.0, "pauses": []}

            def onCollect(phase, info):
                if phase == "start":
                    state["start"] = time.perf_counter()
                else:
                    state["pauses"].append(
                        (info["generation"], time.perf_counter() - state["start"])
                    )

            def report():
                for generation in (0, 1, 2):
                    d = sorted(x for g, x in state["pauses"] if g == generation)
                    if d:
                        sys.stderr.write(
                            "gcstats: generation {}: {} collections, {:.1f} ms in all, "
                            "longest {:.2f} ms\n".format(
                                generation, len(d), sum(d) * 1000, d[-1] * 1000
                            )
                        )
                sys.stderr.flush()

            gc.callbacks.append(onCollect)
            reactor.addSystemEventTrigger("before", "shutdown", report)
        else:
            sys.stderr.write("trypatches: unknown patch {!r}\n".format(name))
            sys.exit(2)
    applied = [p for p in patches if p not in FIXED]
    sys.stderr.write("trypatches: applied {}\n".format(", ".join(applied) or "nothing"))
    sys.argv[0] = "twistd"
    from twisted.scripts.twistd import run

    run()


if __name__ == "__main__":
    main()
