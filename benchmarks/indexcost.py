"""
The search index's CPU per message (issue 21's SEND cost, issue 22's server
CPU), measured as process CPU time, which a shared machine disturbs far less
than load.py's throughput:

  catch-up   what the server's indexing process spends per delivered
             message: --users mailboxes each get --batch messages through
             SpoolStore.deliver (load.py's 1,024-byte body, or generated
             mail with --kind mail), then a second spool store (the indexing
             process's) runs MailboxIndex.catchUp on each, as after a kick;
             --rounds times, the first two not counted (the first catch-up
             is a full sync)
  build      indexing a --build-messages mailbox of generated mail from
             scratch in this one process (parsers 1): parsing and writing
             together, the CPU a build needs whatever its processes

Each --tree (a checkout: ``git archive COMMIT`` unpacked; "none": this one)
runs in its own process, started in that tree's directory; the trees take
turns --repeat times and the smallest figure of each is shown (the one other
processes disturbed least).

    git archive 6b2291e | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    .venv/bin/python benchmarks/indexcost.py --tree /tmp/base --tree none
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)


def catchUpCost(users, batch, rounds, kind):
    """
    CPU seconds per message of the indexing process's catch-ups.
    """
    from load import makeBody
    from mailgen import MailGenerator

    from twisted_mail.stores.spool.indexer import SynchronousReactor, resultOf
    from twisted_mail.stores.spool.store import SpoolStore

    work = tempfile.mkdtemp(prefix="simplemail-indexcost-")
    try:
        spool = os.path.join(work, "spool")
        os.makedirs(spool)
        server = SpoolStore(spool, reactor=SynchronousReactor())
        indexer = SpoolStore(spool, reactor=SynchronousReactor())
        names = ["u{}".format(i) for i in range(users)]
        for name in names:
            resultOf(server.addUser(name))
        if kind == "load":
            body = makeBody(1024, random.Random(1))
            deliver = lambda name, i: server.deliver("alice", name, body)  # noqa: E731
        else:
            mails = [text for _, text in MailGenerator(1).messages(200)]
            deliver = lambda name, i: server.deliverMessage(  # noqa: E731
                "x@example.com", name, mails[i % len(mails)])
        spent, counted = 0.0, 0
        for r in range(rounds):
            # The deliveries are not what is measured: no fsync for them.
            sync, os.fsync = os.fsync, lambda fd: None
            try:
                for name in names:
                    for k in range(batch):
                        resultOf(deliver(name, r * batch + k))
            finally:
                os.fsync = sync
            started = time.process_time()
            for name in names:
                resultOf(indexer._mailbox(name).index.catchUp())
            if r >= 2:
                spent += time.process_time() - started
                counted += users * batch
        server.close()
        indexer.close()
        return spent / counted
    finally:
        shutil.rmtree(work)


def buildCost(mboxPath, count):
    """
    CPU seconds per message of a build from scratch, in this process.
    """
    from twisted_mail.stores.spool.indexer import SynchronousReactor, resultOf
    from twisted_mail.stores.spool.store import SpoolStore

    work = tempfile.mkdtemp(prefix="simplemail-indexcost-")
    try:
        spool = os.path.join(work, "spool")
        os.makedirs(spool)
        shutil.copy(mboxPath, os.path.join(spool, "bob"))
        store = SpoolStore(spool, reactor=SynchronousReactor())
        mailbox = store._mailbox("bob")
        # The mbox reader's first look (stamping ids into a file no server
        # has seen) is the mailbox's, not the index's: done before the clock.
        def look():
            with mailbox.mbox.locked():
                return len(mailbox.mbox.entries)

        assert resultOf(mailbox.run(look)) == count
        mailbox.index.parsers = 1
        started = time.process_time()
        resultOf(mailbox.index.sync())
        spent = time.process_time() - started
        store.close()
        return spent / count
    finally:
        shutil.rmtree(work)


def child(args):
    """
    One measurement in this process (started in the tree measured).
    """
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.getcwd())
    row = {}
    if args.users:
        row["catchup"] = catchUpCost(args.users, args.batch, args.rounds, args.kind)
    if args.build_messages:
        row["build"] = buildCost(args.mbox, args.build_messages)
    print(json.dumps(row))


def run(tree, args, mbox):
    command = [sys.executable, os.path.join(HERE, "indexcost.py"), "--child",
               "--users", str(args.users), "--batch", str(args.batch),
               "--rounds", str(args.rounds), "--kind", args.kind,
               "--build-messages", str(args.build_messages), "--mbox", mbox]
    cwd = TOP if tree == "none" else tree
    env = dict(os.environ, PYTHONPATH=cwd)
    out = subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="a checkout to measure ('none': this one; default: none)")
    parser.add_argument("--repeat", type=int, default=3, help="turns of every tree (3)")
    parser.add_argument("--users", type=int, default=10,
                        help="mailboxes of the catch-up (10, as load.py; 0: no catch-up)")
    parser.add_argument("--batch", type=int, default=250,
                        help="messages per mailbox per catch-up (250: load.py's 5,000 "
                             "msg/s over 10 mailboxes, a kick every 0.5 s)")
    parser.add_argument("--rounds", type=int, default=6, help="catch-ups per mailbox (6)")
    parser.add_argument("--kind", choices=["load", "mail"], default="load",
                        help="load.py's body through SEND, or generated mail (mailgen.py)")
    parser.add_argument("--build-messages", type=int, default=3000,
                        help="messages of the build (3000; 0: no build)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mbox", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    trees = args.tree or ["none"]
    print("command:", " ".join(sys.argv))
    print("load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    work = tempfile.mkdtemp(prefix="simplemail-indexcost-")
    try:
        mbox = os.path.join(work, "bob")
        if args.build_messages:
            sys.path.insert(0, HERE)
            from mailgen import writeMbox

            writeMbox(mbox, args.build_messages)
        best = {}
        for turn in range(args.repeat):
            for tree in trees:
                row = run(tree, args, mbox)
                print("turn {} {:<24} {}".format(turn + 1, tree, "  ".join(
                    "{} {:.1f} us/msg".format(k, v * 1e6) for k, v in sorted(row.items()))),
                    flush=True)
                for k, v in row.items():
                    best[(tree, k)] = min(best.get((tree, k), v), v)
    finally:
        shutil.rmtree(work)
    print("load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("\nsmallest of {} turns (CPU microseconds per message):".format(args.repeat))
    for tree in trees:
        print("  {:<24} {}".format(tree, "  ".join(
            "{} {:.1f}".format(k, v * 1e6) for (t, k), v in sorted(best.items()) if t == tree)))
    if len(trees) == 2:
        a, b = trees
        for k in sorted({k for _, k in best}):
            if (a, k) in best and (b, k) in best:
                print("  {}: {} / {} = {:.2f}".format(k, b, a, best[(b, k)] / best[(a, k)]))


if __name__ == "__main__":
    main()
