"""
Password guessing against a real C{twistd -n simplemail --passwords}: how
many guesses an attacker gets, and what a user with the right password sees
meanwhile.

The attacker opens C{--connections} line-protocol connections from
127.0.0.1 and, on each, sends C{USER victim} / C{PASS <guess>} as fast as
the answers come, for C{--seconds}; a connection the server closes is
opened again (counted).  Meanwhile a legitimate user connects from another
address (127.0.0.2) once a second and logs in as C{alice} with the right
password; the time from C{PASS} to its C{+OK} is its login latency.  Before
the attack starts, the same login is timed on an idle server.

Burst modes (issue 23): C{--burst one} opens 300 connections at once from
127.0.0.1; C{--burst many} 5 connections from each of 50 addresses
(127.0.0.10 to 127.0.0.59, the client side bound to each; Linux routes all
of 127.0.0.0/8 to loopback).  Every connection guesses as above.  Besides
the answers, the password checks the server made are counted from its log
(one C{login refused for} line per refused check).

Run it from a checkout (it serves that checkout's code)::

    python benchmarks/guessing.py [--seconds 10] [--connections 8]
    python benchmarks/guessing.py --burst one --seconds 20
    python benchmarks/guessing.py --burst many --seconds 20

To measure another revision, copy this file into that checkout's
C{benchmarks/} and run it there.  Every wait is bounded; the server is
stopped at the end.
"""

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    BenchError,
    LineConnection,
    checkoutState,
    commandLine,
    cpuSeconds,
    freePort,
    machineLoad,
    median,
    fmt,
    ms,
    simplemailServer,
)

VICTIM, VICTIM_PASSWORD = "victim", "correct horse battery"
USER, USER_PASSWORD = "alice", "alice's right password"
LEGIT_ADDRESS = "127.0.0.2"


async def openFrom(port, source, timeout):
    """
    A line connection to the server from the loopback address C{source},
    past the greeting.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), timeout)
    reader, writer = await asyncio.open_connection(sock=sock)
    connection = LineConnection(reader, writer, timeout)
    await connection.reply()  # the greeting
    return connection


async def setUp(port):
    connection = await LineConnection.open(port, timeout=30)
    await connection.reply()
    for userid, password in ((VICTIM, VICTIM_PASSWORD), (USER, USER_PASSWORD)):
        await connection.command("ADDU {} {}".format(userid, password).encode())
    await connection.close()


#: The burst modes: each connection's source address.
BURSTS = {
    "one": ["127.0.0.1"] * 300,
    "many": ["127.0.0.{}".format(10 + i // 5) for i in range(250)],
}


class Attack:
    def __init__(self, port, sources, seconds):
        self.port = port
        self.sources = sources
        self.connections = len(sources)
        self.seconds = seconds
        self.guesses = 0
        self.reconnects = 0
        self.connectErrors = {}
        self.accepted = 0
        self.replies = []

    async def run(self):
        self.deadline = time.monotonic() + self.seconds
        self.connecting = asyncio.Semaphore(16)
        await asyncio.gather(*(self.attacker(i) for i in range(self.connections)))

    async def attacker(self, number):
        guess = 0
        connection = None
        while time.monotonic() < self.deadline:
            remaining = self.deadline - time.monotonic()
            try:
                if connection is None:
                    # A few connects at a time: the server's listen backlog
                    # (50) would drop the rest's handshakes for seconds.
                    async with self.connecting:
                        connection = await openFrom(
                            self.port, self.sources[number], timeout=remaining)
                connection.timeout = max(0.01, self.deadline - time.monotonic())
                await connection.command(b"USER " + VICTIM.encode())
                guess += 1
                connection.send("PASS guess-{}-{}\r\n".format(number, guess).encode())
                line = await connection.readLine()
            except (asyncio.TimeoutError, BenchError, OSError, ConnectionError) as e:
                if connection is None:
                    # Could not connect: counted, and tried again after a
                    # pause (never a busy loop).
                    key = type(e).__name__
                    self.connectErrors[key] = self.connectErrors.get(key, 0) + 1
                    await asyncio.sleep(0.2)
                if connection is not None:
                    await connection.close()
                    connection = None
                    if time.monotonic() < self.deadline:
                        self.reconnects += 1
                continue
            self.guesses += 1
            if line.startswith(b"+OK"):
                self.accepted += 1
            elif len(self.replies) < 3 and line not in self.replies:
                self.replies.append(line)
        if connection is not None:
            await connection.close()


async def legitimateLogin(port, timeout=60.0):
    """
    Connect from another address and log in with the right password.

    @return: seconds from sending C{PASS} to its C{+OK}.
    """
    connection = await openFrom(port, LEGIT_ADDRESS, timeout)
    try:
        await connection.command(b"USER " + USER.encode())
        started = time.monotonic()
        await connection.command(b"PASS " + USER_PASSWORD.encode())
        return time.monotonic() - started
    finally:
        await connection.close()


async def legitimateDuring(port, until, interval=1.0):
    latencies = []
    await asyncio.sleep(0.5)
    while time.monotonic() < until:
        started = time.monotonic()
        latencies.append(await legitimateLogin(port))
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    return latencies


async def measure(port, sources, seconds, pid):
    idle = [await legitimateLogin(port) for _ in range(3)]
    cpuBefore = cpuSeconds(pid)
    attack = Attack(port, sources, seconds)
    started = time.monotonic()
    attackTask = asyncio.ensure_future(attack.run())
    during = await legitimateDuring(port, started + seconds)
    await attackTask
    elapsed = time.monotonic() - started
    cpu = cpuSeconds(pid) - cpuBefore
    return idle, attack, elapsed, during, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--burst", choices=sorted(BURSTS), default=None,
                        help="300 connections from one address, or 5 from each of 50")
    parser.add_argument("--log", default=None, help="the server's log file")
    args = parser.parse_args(argv)
    if not (0 < args.seconds <= 120) or not (0 < args.connections <= 64):
        parser.error("--seconds must be in (0, 120] and --connections in (0, 64]")
    if args.burst:
        sources = BURSTS[args.burst]
    else:
        sources = ["127.0.0.1"] * args.connections
    print(commandLine())
    print("checkout:", checkoutState())
    print("machine load:", machineLoad())
    with tempfile.TemporaryDirectory(prefix="guessing-") as tmp:
        port = freePort()
        logPath = args.log or os.path.join(tmp, "server.log")
        server = simplemailServer(
            os.path.join(tmp, "spool"),
            port,
            logPath,
            extraArgs=["--passwords", os.path.join(tmp, "passwords")],
        )
        server.start()
        try:
            asyncio.run(setUp(port))
            idle, attack, elapsed, during, cpu = asyncio.run(
                measure(port, sources, args.seconds, server.pid)
            )
        finally:
            server.stop()
        with open(logPath, encoding="utf-8", errors="replace") as f:
            checks = sum("login refused for" in line for line in f)
    print()
    addresses = len(set(sources))
    print("attack: {} connections from {} address{} for {:.1f} s".format(
        len(sources), addresses, "" if addresses == 1 else "es", elapsed))
    print("  password checks refused (server log): {} ({:.2f}/s per address)".format(
        checks, checks / elapsed / addresses))
    print("  guesses answered: {} ({:.1f} guesses/s), accepted: {}, reconnects: {}".format(
        attack.guesses, attack.guesses / elapsed, attack.accepted, attack.reconnects))
    if attack.connectErrors:
        print("  failed connection attempts: {}".format(", ".join(
            "{} {}".format(n, kind) for kind, n in sorted(attack.connectErrors.items()))))
    print("  refusals seen: {}".format(
        ", ".join(r.decode("ascii", "replace") for r in attack.replies) or "-"))
    print("  server CPU during the attack: {:.1f} s in {:.1f} s".format(cpu, elapsed))
    print("right password from {} (PASS to +OK):".format(LEGIT_ADDRESS))
    print("  idle server:    median {} ms, max {} ms ({} logins)".format(
        fmt(ms(median(idle)), "{:.0f}"), fmt(ms(max(idle)), "{:.0f}"), len(idle)))
    if during:
        print("  during attack:  median {} ms, max {} ms ({} logins)".format(
            fmt(ms(median(during)), "{:.0f}"), fmt(ms(max(during)), "{:.0f}"), len(during)))
    else:
        print("  during attack:  no login finished")


if __name__ == "__main__":
    main()
