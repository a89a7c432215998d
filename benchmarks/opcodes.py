"""
Python opcodes per delivered message, counted in-process: a measure of the
server's own Python work that the machine's load does not move (CPU time
on a shared machine moves by 20-40 % from run to run).

The line door and the journalled spool run on ``StringTransport`` and a
stand-in reactor whose thread jobs wait for a drain, so that each drain is
one group commit: ``--connections`` connections each send ``SEND u<r>``
and a ``--body-size`` byte body (the load of ``load.py``) to one of 10
mailboxes, then the batch is stored and answered.  ``fsync`` is stubbed
(its cost is the disk's).  ``sys.settrace`` counts the opcodes run in the
door (reading, parsing, handing over) and in the batch (the mailbox
thread's work and the answers).  Not counted: the reactor's own dispatch,
the thread hand-offs and the kernel.  ``--top N`` lists the functions with
most opcodes.

    .venv/bin/python benchmarks/opcodes.py            # a few seconds
    .venv/bin/python benchmarks/opcodes.py --top 30

To compare two commits, run it from each checkout (``PYTHONPATH`` set to
it, from its directory).
"""

import argparse
import collections
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[0:0] = [HERE, os.path.dirname(HERE)]

from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.python.filepath import FilePath  # noqa: E402

from load import makeBody  # noqa: E402
from tests.crashstates import ManualThreads  # noqa: E402
from twisted_mail.doors.line import MailServerFactory  # noqa: E402
from twisted_mail.stores.spool.store import SpoolStore  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--top", type=int, default=0)
    args = parser.parse_args()
    os.fsync = os.fdatasync = lambda fd: None
    reactor = ManualThreads()
    with tempfile.TemporaryDirectory() as path:
        store = SpoolStore(FilePath(path), reactor=reactor, journal=True)
        for i in range(10):
            store.addUser("u%d" % i)
        reactor.drain()
        factory = MailServerFactory(store, reactor=reactor)
        connections = []
        for c in range(args.connections):
            protocol = factory.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            protocol.dataReceived(b"USER u%d\r\n" % (c % 10))
            connections.append((protocol, transport))
        reactor.drain()
        block = makeBody(args.body_size, random.Random(1)) + b".\r\n"
        rng = random.Random(2)

        def door():
            for protocol, _ in connections:
                protocol.dataReceived(b"SEND u%d\r\n" % rng.randrange(10))
                protocol.dataReceived(block)

        def batch():
            reactor.drain()
            reactor.advance(0)
            for _, transport in connections:
                transport.clear()

        for _ in range(20):  # warm up: every mailbox seen, every file open
            door()
            batch()
        counts = [0, 0]
        where = [0]
        perFunction = collections.Counter()

        def tracer(frame, event, arg):
            frame.f_trace_opcodes = True
            if event == "opcode":
                counts[where[0]] += 1
                if args.top:
                    code = frame.f_code
                    perFunction[where[0], code.co_filename, code.co_name] += 1
            return tracer

        sys.settrace(tracer)
        for _ in range(args.batches):
            where[0] = 0
            door()
            where[0] = 1
            batch()
        sys.settrace(None)
        store.close()
    messages = args.batches * args.connections
    print("opcodes per delivered message: door {:.0f}, batch {:.0f}, total {:.0f}".format(
        counts[0] / messages, counts[1] / messages, sum(counts) / messages))
    for (side, filename, name), n in perFunction.most_common(args.top):
        short = filename.split("site-packages/")[-1].replace(os.path.dirname(HERE) + "/", "")
        print("  {:5} {:7.1f}  {} {}".format("door" if side == 0 else "batch", n / messages,
                                             short, name))


if __name__ == "__main__":
    main()
