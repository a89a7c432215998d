"""
The cold first look at a big INBOX over IMAP (issues 20 and 21): login +
``SELECT INBOX`` on a fresh server that has never seen the mbox file, a
second session (warm), then the same after a restart (the server has seen
the file, its process has not), beside Debian's Dovecot 2.3 on its own copy
of the mail (``--dovecot``; needs root).

``--foreign`` writes the mail as another program would (no id lines: the
server gives each message its id on first sight); otherwise the file has
the id lines the store writes.  ``--checkout DIR`` runs the server from
another tree (an A/B run against older code)::

    .venv/bin/python benchmarks/imapcold.py --sizes 20000 --rounds 2 [--dovecot] [--foreign]
"""

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import imap  # noqa: E402


def writeMail(path, count, bodySize, foreign):
    line = b"The quick brown fox jumps over the lazy dog, again and again. 0123456789\n"
    body = line * max(1, bodySize // len(line))
    with open(path, "wb") as f:
        for n in range(count):
            f.write(b"From alice@localhost Fri Dec  4 12:00:00 2026\n")
            if not foreign:
                f.write(b"X-Simplemail-Id: " + secrets.token_urlsafe(12).encode() + b"\n")
            f.write(b"From: alice@localhost\nTo: bob@localhost\n"
                    b"Date: Fri, 04 Dec 2026 12:00:00 +0000\n"
                    b"Message-ID: <bench%d@localhost>\nSubject: message number %d\n\n"
                    % (n, n))
            f.write(body + b"\n")


def select(port):
    """
    Seconds of one login + SELECT INBOX; the EXISTS count.
    """
    t0 = time.perf_counter()
    c = imap.Client(port)
    c.command(b"LOGIN bob secret")
    line, _ = c.command(b"SELECT INBOX")
    elapsed = time.perf_counter() - t0
    c.close()
    return elapsed


def simplemail(workdir, count, args):
    spool = os.path.join(workdir, "spool")
    os.makedirs(spool)
    writeMail(os.path.join(spool, "bob"), count, args.body_size, args.foreign)
    port = common.freePort()
    imapPort = common.freePort(avoid={port})
    extra = ["--imap", "tcp:{}:interface=127.0.0.1".format(imapPort)]
    times = {}
    for phase in ("cold", "restart"):
        server = common.simplemailServer(
            spool, port, os.path.join(workdir, "twistd.log"), extra)
        server.start()
        imap._waitIMAP(imapPort)
        try:
            times[phase] = select(imapPort)
            if phase == "cold":
                times["warm"] = select(imapPort)
        finally:
            server.stop()
    return times


def dovecot(workdir, count, args):
    dovecot, port = imap.startDovecot(workdir, "d", count, args.body_size)
    try:
        cold = select(port)
        warm = select(port)
    finally:
        imap.stop(dovecot)
    return {"cold": cold, "warm": warm}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--foreign", action="store_true")
    parser.add_argument("--dovecot", action="store_true")
    parser.add_argument("--checkout", help="run the server from this tree")
    args = parser.parse_args()
    if args.checkout:
        # The server's sys.path starts with its working directory: run it
        # there, or it imports this tree's package whatever PYTHONPATH says.
        common.CHECKOUT = os.path.abspath(args.checkout)
        os.chdir(common.CHECKOUT)
    print("load average:", os.getloadavg())
    for count in [int(s) for s in args.sizes.split(",")]:
        for n in range(args.rounds):
            kinds = [("simplemail", simplemail)] + ([("dovecot", dovecot)] if args.dovecot else [])
            for kind, run in kinds:
                workdir = tempfile.mkdtemp(prefix="imapcold-")
                os.chmod(workdir, 0o755)
                try:
                    times = run(workdir, count, args)
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
                print("{} {} round {}: ".format(kind, count, n + 1) + ", ".join(
                    "{} {:.3f}s".format(k, v) for k, v in times.items()), flush=True)
    print("load average:", os.getloadavg())


if __name__ == "__main__":
    main()
