"""
The first search after a burst of deliveries (issue 21's indexing, seen by
a user): how much of the burst the index holds when the burst ends, and how
long the first search of the web API then takes, which indexes whatever
the indexing processes have not.

A real C{twistd -n simplemail} (--workers N, or one process with
--workers 1) with its web door; --clients connections send --messages
messages in all (--body-size bytes of words each, one of which is the
searched word) to one user, each waiting for its acknowledgement; the
moment the last is acknowledged the index's count is read (as another
program would, read-only) and the search is sent.  Run it in two trees
(each times its own checkout) to compare them.

    python benchmarks/burstsearch.py --workers 2 --messages 20000
"""

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import SyncClient  # noqa: E402

USER = "burst"
WORDS = ("report meeting budget schedule review project draft notes agenda summary "
         "quarter figures update travel invoice").split()


def indexed(spool):
    """
    How many messages the user's index holds (0 while it has none).
    """
    path = os.path.join(spool, "." + USER + ".index")
    try:
        db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        return db.execute("SELECT count(*) FROM msg").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def send(port, count, bodySize, seed, errors):
    rng = random.Random(seed)
    try:
        client = SyncClient(port)
        client.command(("USER " + USER).encode())
        for _ in range(count):
            words = []
            while sum(map(len, words)) + len(words) < bodySize:
                words.append(rng.choice(WORDS))
            client.command(("SEND {} {}".format(USER, " ".join(words))).encode())
        client.close()
    except Exception as e:
        errors.append(e)


def search(webPort, query):
    url = "http://127.0.0.1:{}/api/v1/users/{}/messages?q={}&limit=50".format(
        webPort, USER, query)
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        body = json.loads(response.read())
    return time.perf_counter() - started, body["total"]


def run(args, workdir):
    spool = os.path.join(workdir, "spool")
    port, webPort = common.freePort(), None
    webPort = common.freePort(avoid=(port,))
    extra = ["--workers", str(args.workers),
             "--web", "tcp:{}:interface=127.0.0.1".format(webPort)]
    server = common.simplemailServer(spool, port, os.path.join(workdir, "server.log"), extra)
    server.start()
    try:
        admin = SyncClient(port)
        admin.command(("ADDU " + USER).encode())
        admin.close()
        errors = []
        each = args.messages // args.clients
        threads = [threading.Thread(target=send, args=(port, each, args.body_size, i, errors))
                   for i in range(args.clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        burst = time.perf_counter() - started
        if errors:
            raise common.BenchError("sending failed: {!r}".format(errors[0]))
        held = indexed(spool)
        first, total = search(webPort, "meeting")
        second, _ = search(webPort, "meeting")
        return {"sent": each * args.clients, "burst_s": burst, "held": held,
                "first_ms": first * 1000, "second_ms": second * 1000, "total": total}
    finally:
        server.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    print("checkout: {}".format(common.checkoutState()))
    print("machine: {}".format(common.machineLoad()))
    for n in range(args.rounds):
        workdir = tempfile.mkdtemp(prefix="simplemail-burst-")
        try:
            row = run(args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print("round {}: --workers {}: {} messages in {:.1f} s; indexed when the burst "
              "ended: {} ({:.0f} %); first search {:.0f} ms ({} found), the next {:.0f} ms"
              .format(n + 1, args.workers, row["sent"], row["burst_s"], row["held"],
                      100.0 * row["held"] / row["sent"], row["first_ms"], row["total"],
                      row["second_ms"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
