"""
The web API (issue 12): listing a large mailbox, and streaming a large
message's /raw.

Phases, on one C{twistd -n simplemail --web ...} server whose spool holds
mailboxes written before it starts (mbox records with the store's id line,
as the server writes them):

  list     GET /api/v1/users/<user>/messages?start=0&limit=50 on a mailbox
           of --big messages (20,000) and one of --small (400): the first
           listing (the server reads and indexes the mailbox), then
           --repeat more on one keep-alive connection; median, p90 and max.
           Goal: the big mailbox's median under 50 ms after the first
           listing, and within 2x of the small one's.
  open     GET /api/v1/users/<user>/messages/<id> (the message view) of
           --repeat different messages spread through each mailbox, the
           first before anything listed the mailbox: median, p90, max.
           Goal (issue 19): the big mailbox's within 2x of the small one's
           (opening one message does not grow with the folder).
  raw      GET /api/v1/users/raw/messages/<id>/raw of a message of --raw-size
           bytes (10 MiB), read to the end; the server's peak RSS growth
           over its RSS just before (VmHWM reset through
           /proc/PID/clear_refs; a 2 ms VmRSS sampler as a cross-check).
           Goal: growth at most 2x the message size.
"""

import argparse
import http.client
import json
import os
import secrets
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from bigmessage import RssSampler  # noqa: E402
from common import median, ms, percentile, printTable  # noqa: E402

MIB = 1024 * 1024


def record(n, user, rng_words, msgid):
    body = " ".join(rng_words[(n * 7 + i) % len(rng_words)] for i in range(40))
    text = (
        "From sender{n}@example.org Thu Nov 26 12:00:00 2026\n"
        "X-Simplemail-Id: {id}\n"
        "From: Sender {n} <sender{n}@example.org>\n"
        "To: {user}@localhost\n"
        "Subject: Message number {n} about things\n"
        "Date: Thu, 26 Nov 2026 12:00:00 +0000\n"
        "Message-ID: <{n}.{user}@example.org>\n"
        "\n"
        "{body}\n"
        "\n"
    ).format(n=n, id=msgid, user=user, body=body)
    return text.encode("ascii")


def writeMailbox(path, user, count):
    """
    Append C{count} messages to the mailbox file C{path}: their ids.
    """
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
             "tempor incididunt ut labore et dolore magna aliqua").split()
    ids = []
    with open(path, "ab") as f:
        for n in range(count):
            ids.append(secrets.token_urlsafe(12))
            f.write(record(n, user, words, ids[-1]))
    return ids


def writeBigMessage(path, size):
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n"
    count = size // len(line)
    with open(path, "ab") as f:
        f.write(b"From big@example.org Thu Nov 26 12:00:00 2026\n"
                b"X-Simplemail-Id: " + secrets.token_urlsafe(12).encode() + b"\n"
                b"From: big@example.org\nTo: raw@localhost\nSubject: big\n\n")
        f.write(line * count)
        f.write(b"\n")
    return count * len(line)


def get(connection, path):
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise common.BenchError("GET {}: {} {!r}".format(path, response.status, body[:200]))
    return body


def listPhase(port, user, repeat):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    path = "/api/v1/users/{}/messages?start=0&limit=50".format(user)
    t0 = time.monotonic()
    first = json.loads(get(connection, path))
    firstTime = time.monotonic() - t0
    times = []
    for _ in range(repeat):
        t0 = time.monotonic()
        get(connection, path)
        times.append(time.monotonic() - t0)
    connection.close()
    return first["total"], len(first["messages"]), firstTime, times


def openPhase(port, user, ids, repeat):
    """
    Open C{repeat} messages spread evenly through C{ids}: the times.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times = []
    for i in range(repeat):
        msgid = ids[(i * len(ids)) // repeat]
        t0 = time.monotonic()
        view = json.loads(get(connection, "/api/v1/users/{}/messages/{}".format(user, msgid)))
        times.append(time.monotonic() - t0)
        if view["id"] != msgid:
            raise common.BenchError("opened {} for {}".format(view["id"], msgid))
    connection.close()
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=20000)
    parser.add_argument("--small", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--raw-size", type=int, default=10 * MIB)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    print("command:", common.commandLine())
    print("checkout:", common.checkoutState())
    print("machine:", common.machineLoad())
    work = args.workdir or tempfile.mkdtemp(prefix="simplemail-webbench-")
    spool = os.path.join(work, "spool")
    port = common.freePort()
    webPort = common.freePort(avoid=(port,))
    extra = ["--web", "tcp:{}:interface=127.0.0.1".format(webPort),
             "--max-message-size", str(args.raw_size + MIB)]
    log = os.path.join(work, "server.log")
    server = common.simplemailServer(spool, port, log, extraArgs=extra)
    try:
        server.start()
        client = common.SyncClient(port)
        try:
            for user in ("big", "small", "raw"):
                client.command(b"ADDU " + user.encode())
        finally:
            client.close()
        server.stop()
        t0 = time.monotonic()
        ids = {"big": writeMailbox(os.path.join(spool, "big"), "big", args.big),
               "small": writeMailbox(os.path.join(spool, "small"), "small", args.small)}
        rawSize = writeBigMessage(os.path.join(spool, "raw"), args.raw_size)
        print("wrote the mailboxes in {:.1f} s".format(time.monotonic() - t0))
        server = common.simplemailServer(spool, port, log, extraArgs=extra)
        server.start()

        rows = []
        opened = {}
        for user in ("small", "big"):
            times = openPhase(webPort, user, ids[user], args.repeat)
            opened[user] = median(times)
            rows.append([user, len(ids[user])] + ["{:.1f}".format(ms(t)) for t in (
                times[0], median(times), percentile(times, 90), max(times))])
        printTable(["mailbox", "total", "first ms", "median ms", "p90 ms", "max ms"], rows)
        ratio = opened["big"] / opened["small"]
        print("open: big / small median: {:.2f}x; goal: within 2x {}".format(
            ratio, common.verdict(ratio <= 2.0)))

        rows = []
        results = {}
        for user in ("small", "big"):
            total, shown, first, times = listPhase(webPort, user, args.repeat)
            results[user] = median(times)
            rows.append([user, total, shown] + ["{:.1f}".format(ms(t)) for t in (
                first, median(times), percentile(times, 90), max(times))])
        printTable(["mailbox", "total", "listed", "first ms", "median ms", "p90 ms", "max ms"],
                   rows)
        ratio = results["big"] / results["small"]
        print("big / small median: {:.2f}x; goal: big median < 50 ms {}, within 2x {}".format(
            ratio, common.verdict(results["big"] < 0.050), common.verdict(ratio <= 2.0)))

        connection = http.client.HTTPConnection("127.0.0.1", webPort, timeout=120)
        msgid = json.loads(get(connection, "/api/v1/users/raw/messages"))["messages"][0]["id"]
        time.sleep(1.0)
        before = common.procStatus(server.pid)["VmRSS"]
        reset = common.resetPeakRss(server.pid)
        sampler = RssSampler(server.pid)
        sampler.start()
        t0 = time.monotonic()
        connection.request("GET", "/api/v1/users/raw/messages/{}/raw".format(msgid))
        response = connection.getresponse()
        received = 0
        while True:
            piece = response.read(256 * 1024)
            if not piece:
                break
            received += len(piece)
        elapsed = time.monotonic() - t0
        time.sleep(0.1)
        sampler.stop()
        status = common.procStatus(server.pid)
        peak = status["VmHWM"] if reset else sampler.peak
        growth = (peak - before) * 1024
        connection.close()
        printTable(["phase", "bytes", "seconds", "RSS before KiB", "peak KiB",
                    "sampled peak KiB", "growth / size"],
                   [["raw", received, "{:.2f}".format(elapsed), before, peak, sampler.peak,
                     "{:.2f}".format(growth / received)]])
        print("raw: {} bytes of {} received; growth {:.2f}x the message size; goal <= 2x {}"
              .format(received, rawSize, growth / received, common.verdict(growth <= 2 * received)))
    finally:
        server.stop()
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
