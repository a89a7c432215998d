"""
A latency probe: one connection that sends one command every INTERVAL
seconds and times each reply (the reactor's responsiveness as a client sees
it).  Run by load.py and bigmessage.py as a separate process, so that the
load generator's own work does not delay the probe.

It stops at end of standard input, after --max-seconds or after --max-count
probes, whichever comes first, and prints one JSON object:
{"latencies": [seconds...], "starts": [monotonic seconds...], "errors": N}.

    python benchmarks/probe.py --port 9025 --command LSTU --interval 0.02 < /dev/null
"""

import argparse
import json
import os
import select
import socket
import sys
import time


def readReply(sock, buf, multiline, deadline):
    """
    Read one reply: a status line, and for a multi-line reply the data lines
    up to the "." line.  SMTP continuation lines (NNN-) are skipped.

    @return: C{(ok, rest of the buffer)}.
    """
    first = None
    while True:
        i = buf.find(b"\n")
        while i == -1:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            buf += chunk
            i = buf.find(b"\n")
        line, buf = buf[:i].rstrip(b"\r"), buf[i + 1 :]
        if first is None:
            if line[:3].isdigit() and line[3:4] == b"-":
                continue
            first = line
            ok = line.startswith(b"+OK") or line[:1] in (b"2", b"3")
            if not (multiline and line.startswith(b"+OK")):
                return ok, buf
        elif line == b".":
            return True, buf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--command", default="LSTU",
                        help="LSTU or CAPA (simplemail, multi-line replies) or NOOP (SMTP)")
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--max-count", type=int, default=100000)
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="longest wait for one reply")
    args = parser.parse_args(argv)
    multiline = args.command.upper() in ("LSTU", "CAPA")
    command = args.command.encode("ascii") + b"\r\n"

    sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    ok, buf = readReply(sock, buf, False, time.monotonic() + args.timeout)  # greeting
    latencies, starts, errors = [], [], 0
    stdin = sys.stdin.fileno()
    end = time.monotonic() + args.max_seconds
    nextAt = time.monotonic()
    while len(latencies) < args.max_count and time.monotonic() < end:
        wait = max(0.0, nextAt - time.monotonic())
        readable, _, _ = select.select([stdin], [], [], wait)
        if readable:
            if not os.read(stdin, 4096):
                break
        t0 = time.monotonic()
        sock.sendall(command)
        try:
            ok, buf = readReply(sock, buf, multiline, t0 + args.timeout)
        except (TimeoutError, socket.timeout, ConnectionError):
            errors += 1
            break
        t1 = time.monotonic()
        if not ok:
            errors += 1
        latencies.append(t1 - t0)
        starts.append(t0)
        nextAt = max(t0 + args.interval, t1)
    try:
        sock.sendall(b"QUIT\r\n")
    except OSError:
        pass
    sock.close()
    json.dump({"latencies": latencies, "starts": starts, "errors": errors}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
