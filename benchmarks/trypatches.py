"""
Run twistd simplemail with candidate changes patched in at run time, to
measure one before anyone edits twisted_mail/.  Not used by default: pass it
to load.py, scale.py or bigmessage.py with --twistd-wrapper, and name the
patches in the environment variable SM_PATCH (comma-separated):

    SM_PATCH=nolog .venv/bin/python benchmarks/load.py \
        --servers simplemail,simplemail-smtp --rounds 1 \
        --twistd-wrapper benchmarks/trypatches.py

With --workers above 1 the patches apply to the supervisor and to each
worker (started through this script, "trypatches.py --worker"), not to the
search index's indexing process.

Patches (each replaces something of twisted_mail by name; one whose target
is gone is reported on stderr and skipped; smtpnopause copies the tree's
code of the methods it replaces, as of f5570f1: check it against the tree
before trusting a measurement):

  nolog        the server's, the SMTP ingress's and the spool's Loggers drop
               their events (the cost of logging every connection and
               delivery)
  smtpnopause  the SMTP ingress holds input while a reply is pending without
               pausing the transport (as the line protocol does since
               345e321): two epoll_ctl calls fewer per message
  pool<N>      the reactor's thread pool has at most N threads (default 10)
  mailthreads<N>  the mailbox thread pool (spool.mailboxThreadPool) has N
               threads instead of the tree's default
  switch<MS>   sys.setswitchinterval(MS / 1000) (GIL hand-over interval)
  noindex      the spool keeps no search index (SpoolStore's searchIndex
               off): the index's cost to delivery throughput (issue 21)
  noseen       reading marks nothing \\Seen in the spool: what a read's
               \\Seen (applied by the next job, written in batches) costs
  kickN        the indexing process is kicked N seconds after a delivery
               batch, not KICK_DELAY (e.g. kick3): bigger indexing batches
  indexhere    no indexing process (SpoolStore's indexProcess off): the
               server indexes deliveries through the journal only at the
               next search (as a --workers worker did until the eighth
               stop)
  gcstats      print the garbage collector's pauses at shutdown (stderr)
  lockstats    print, at shutdown (stderr), how often and how long the
               server waited for a mailbox lock another process held (the
               indexing process, mutt)
  batchstats   print, at shutdown (stderr), the group commits' batch sizes,
               how long each batch waited for the mailbox thread, and how
               long the thread took to build, write and sync it

Patches this script used to offer are either in the tree now (FIXED below:
nodelay, usercache, fastquote and linearindex since 345e321, fastids since
42c63c1, bulkbody since 631663b) or retired (RETIRED below: spoolpool,
blockquote).  Naming one is harmless (it is reported and skipped), so old
command lines still run, and measure the tree as it is.
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

#: Patches that no longer fit the tree, and why.
RETIRED = {
    "spoolpool": "the tree has its own mailbox thread pool since 42c63c1 "
    "(mailthreads<N> sizes it)",
    "blockquote": "since 400fe82 a SEND body arrives in blocks taken in bulk "
    "(_Body.addBlock), which the patch's hook on _Body.add never sees",
}


def patchSmtpNoPause():
    """
    The SMTP ingress holds input while a reply is pending by not reading
    its buffer, as the line protocol now does; the transport is paused only
    when more than a command line's worth waits meanwhile (saves the two
    epoll_ctl calls of pauseProducing/resumeProducing per message).
    """
    from twisted_mail.doors.smtp import protocol as smtp

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


def patchBatchStats(reactor):
    """
    Measure the group commits: batch sizes, the wait for the mailbox thread
    and the time the thread spends on each batch.
    """
    import time

    from twisted_mail.stores.spool import store as spool

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


def patchLockStats(reactor):
    """
    Count the waits for a mailbox lock: the sleeps between tries in
    L{MboxFile.locked}, and the whole wait of each job that slept.
    """
    import threading
    import time

    from twisted_mail.stores.spool import mboxfile

    state = threading.local()
    sleeps, waits = [], []

    class Clock:
        def __getattr__(self, name):
            return getattr(time, name)

        def sleep(self, seconds):
            if not getattr(state, "since", None):
                state.since = time.monotonic()
            sleeps.append(seconds)
            time.sleep(seconds)

    mboxfile.time = Clock()
    original = mboxfile.MboxFile._stillAtPath

    def _stillAtPath(self, st):
        # Called once the locks are held: the end of a wait.
        since = getattr(state, "since", None)
        if since:
            waits.append(time.monotonic() - since)
            state.since = None
        return original(self, st)

    mboxfile.MboxFile._stillAtPath = _stillAtPath

    def report():
        done = sorted(waits)
        sys.stderr.write(
            "lockstats: {} sleeps, {:.1f} ms slept; {} jobs waited, {:.1f} ms in all, "
            "p50 {:.2f} ms, longest {:.2f} ms\n".format(
                len(sleeps), sum(sleeps) * 1000, len(done), sum(done) * 1000,
                done[len(done) // 2] * 1000 if done else 0, done[-1] * 1000 if done else 0))
        sys.stderr.flush()

    reactor.addSystemEventTrigger("before", "shutdown", report)


def patchWorkers():
    """
    Start each --workers worker through this script, so that it is patched
    too (the supervisor spawns C{python -m twisted_mail.service.worker}).
    """
    from twisted_mail.service import workers

    spawn = workers.Supervisor._spawn
    script = os.path.abspath(__file__)

    def _spawn(self, slot):
        reactor = self.reactor

        class Spawning:
            def __getattr__(self, name):
                return getattr(reactor, name)

            def spawnProcess(self, protocol, executable, args, **kwargs):
                if list(args[1:]) == ["-m", "twisted_mail.service.worker"]:
                    args = [executable, script, "--worker"]
                return reactor.spawnProcess(protocol, executable, args, **kwargs)

        self.reactor = Spawning()
        try:
            spawn(self, slot)
        finally:
            self.reactor = reactor

    workers.Supervisor._spawn = _spawn


def main():
    if sys.argv[1:2] in (["-h"], ["--help"]):
        sys.stdout.write(__doc__.lstrip())
        sys.stdout.write("\nEvery argument is passed on to twistd.\n")
        return
    worker = sys.argv[1:2] == ["--worker"]
    # The checkout first, as common.simplemailServer's PYTHONPATH does.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    from twisted_mail.doors import line as server
    from twisted_mail.stores.spool import store as spool

    def missing(name):
        sys.stderr.write("trypatches: {} not applied: its target is gone\n".format(name))

    for name in patches:
        if name in FIXED:
            sys.stderr.write("trypatches: {} is in the tree since {}; nothing to patch\n".format(
                name, FIXED[name]))
            continue
        retired = RETIRED.get(name.rstrip("0123456789"))
        if retired is not None:
            sys.stderr.write("trypatches: {} not applied: {}\n".format(name, retired))
            continue
        if name == "nolog":
            from twisted.logger import Logger

            from twisted_mail.doors.smtp import delivery, factory, protocol

            for module in (server, delivery, factory, protocol, spool):
                module.log = Logger(observer=lambda event: None)
        elif name == "noindex":
            import functools

            spool.SpoolStore.__init__ = functools.partialmethod(
                spool.SpoolStore.__init__, searchIndex=False)
        elif name == "noseen":
            from twisted.internet import defer

            from twisted_mail.stores.spool import views

            views.SpoolFolderView.markSeen = lambda self, msgids: defer.succeed(None)
        elif name.startswith("kick"):
            from twisted_mail.stores.spool import indexing

            indexing.KICK_DELAY = float(name[4:])
        elif name == "indexhere":
            def indexHere(self, *args, original=spool.SpoolStore.__init__, **kwargs):
                kwargs["indexProcess"] = False
                original(self, *args, **kwargs)

            spool.SpoolStore.__init__ = indexHere
        elif name == "smtpnopause":
            if not patchSmtpNoPause():
                missing(name)
        elif name.startswith("mailthreads"):
            from twisted_mail.service import tap

            size = int(name[len("mailthreads"):])
            original = spool.mailboxThreadPool
            tap.mailboxThreadPool = lambda size=size: original(size)
        elif name.startswith("pool"):
            reactor.suggestThreadPoolSize(int(name[4:]))
        elif name.startswith("switch"):
            sys.setswitchinterval(float(name[6:]) / 1000.0)
        elif name == "batchstats":
            patchBatchStats(reactor)
        elif name == "lockstats":
            patchLockStats(reactor)
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
                import collections

                objects = gc.get_objects()
                kinds = collections.Counter(type(o).__name__ for o in objects)
                sys.stderr.write("gcstats: {} objects tracked; most: {}\n".format(
                    len(objects), ", ".join("{} {}".format(k, n)
                                            for k, n in kinds.most_common(8))))
                sys.stderr.flush()

            gc.callbacks.append(onCollect)
            reactor.addSystemEventTrigger("before", "shutdown", report)
        else:
            sys.stderr.write("trypatches: unknown patch {!r}\n".format(name))
            sys.exit(2)
    applied = [p for p in patches
               if p not in FIXED and p.rstrip("0123456789") not in RETIRED]
    sys.stderr.write("trypatches: applied {}\n".format(", ".join(applied) or "nothing"))
    if worker:
        import runpy

        sys.argv[1:2] = []
        runpy.run_module("twisted_mail.service.worker", run_name="__main__", alter_sys=True)
        return
    if patches:
        patchWorkers()
    sys.argv[0] = "twistd"
    from twisted.scripts.twistd import run

    run()


if __name__ == "__main__":
    main()
