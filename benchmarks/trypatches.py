"""
Run twistd simplemail with candidate fixes patched in at run time, to
measure a fix before anyone edits twisted_mail/.  Not used by default: pass
it to load.py or bigmessage.py with --twistd-wrapper, and name the patches
in the environment variable SM_PATCH (comma-separated):

    SM_PATCH=nolog,usercache .venv/bin/python benchmarks/load.py \
        --servers simplemail --rounds 1 --twistd-wrapper benchmarks/trypatches.py

Patches (each replaces a function of twisted_mail by name; one whose target
is gone is reported on stderr and skipped):

  nodelay      TCP_NODELAY on every connection (pipelined replies are not
               held by Nagle's algorithm until the client's delayed ACK)
  usercache    SpoolStore.hasUser answers from a set of users already found,
               without a thread-pool round trip for every SEND
  nolog        the server's and the spool's Logger drop their events (the
               cost of logging every connection and delivery)
  fastquote    message.quoteFrom finds "From " with bytes.find instead of a
               ^-anchored MULTILINE regex (10 MiB: ~20 ms instead of ~150 ms,
               on the reactor thread)
  linearindex  MboxFile._reindex builds a first index without looking ahead
               through the serial list for every message (O(n), not O(n^2))
  pool<N>      the reactor's thread pool has at most N threads (default 10)
  switch<MS>   sys.setswitchinterval(MS / 1000) (GIL hand-over interval)
  gcstats      print the garbage collector's pauses at shutdown (stderr)
"""

import os
import sys

patches = [p for p in os.environ.get("SM_PATCH", "").split(",") if p]


def main():
    if sys.argv[1:2] in (["-h"], ["--help"]):
        sys.stdout.write(__doc__.lstrip())
        sys.stdout.write("\nEvery argument is passed on to twistd.\n")
        return
    # The checkout first, as common.simplemailServer's PYTHONPATH does.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, reactor

    from twisted_mail import message, server, spool

    def missing(name):
        sys.stderr.write("trypatches: {} not applied: its target is gone\n".format(name))

    for name in patches:
        if name == "nodelay":
            original = server.MailServerProtocol.connectionMade

            def connectionMade(self, original=original):
                try:
                    self.transport.setTcpNoDelay(True)
                except (AttributeError, OSError):
                    pass
                original(self)

            server.MailServerProtocol.connectionMade = connectionMade
        elif name == "usercache":
            if not hasattr(spool.SpoolStore, "hasUser"):
                missing(name)
                continue
            originalHas = spool.SpoolStore.hasUser

            def hasUser(self, userid, originalHas=originalHas):
                known = self.__dict__.setdefault("_knownUsers", set())
                if userid in known:
                    return defer.succeed(userid)

                def found(u):
                    known.add(u)
                    return u

                return originalHas(self, userid).addCallback(found)

            spool.SpoolStore.hasUser = hasUser
        elif name == "nolog":
            from twisted.logger import Logger

            server.log = Logger(observer=lambda event: None)
            spool.log = Logger(observer=lambda event: None)
        elif name == "fastquote":

            def quoteFrom(text):
                out = []
                pos = 0
                i = text.find(b"From ")
                while i != -1:
                    j = i
                    while j > 0 and text[j - 1] == 0x3E:  # ">"
                        j -= 1
                    if j == 0 or text[j - 1] == 0x0A:
                        out.append(text[pos:j])
                        out.append(b">")
                        pos = j
                    i = text.find(b"From ", i + 5)
                if not out:
                    return text
                out.append(text[pos:])
                return b"".join(out)

            message.quoteFrom = quoteFrom
        elif name == "linearindex":
            if not hasattr(spool.MboxFile, "_reindex"):
                missing(name)
                continue
            originalReindex = spool.MboxFile._reindex

            def _reindex(self, fd, size, ino, originalReindex=originalReindex):
                if self.entries:
                    return originalReindex(self, fd, size, ino)
                # Nothing known yet: every message gets a fresh serial.
                self._replaceAll(self._newEntries(self._scan(fd, 0, size)))
                self._ino = ino
                self._size = size
                self._journalIno = None
                self._journalPos = 0

            spool.MboxFile._reindex = _reindex
        elif name.startswith("pool"):
            reactor.suggestThreadPoolSize(int(name[4:]))
        elif name.startswith("switch"):
            sys.setswitchinterval(float(name[6:]) / 1000.0)
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
    sys.stderr.write("trypatches: applied {}\n".format(", ".join(patches) or "nothing"))
    sys.argv[0] = "twistd"
    from twisted.scripts.twistd import run

    run()


if __name__ == "__main__":
    main()
