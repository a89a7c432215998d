"""
Run twistd simplemail with a tracer of the reactor's turns (issue 23 item
7): which turns of the reactor ran long, and why.  Pass it to webbig.py
(or any benchmark that takes one) as the twistd wrapper:

    python benchmarks/webbig.py --rounds 5 --twistd-wrapper benchmarks/reactorturns.py
    tail -3 /tmp/simplemail-reactorturns.txt      # REACTORTURNS_OUT to change

A turn is the time between two returns to ``epoll.poll``.  For each turn
the reactor thread's own CPU time is taken (``time.thread_time``): a turn
that used more than 5 ms of CPU is the server's own blocking work, whatever
the machine's load; a turn that took long on the wall clock but little CPU
was waiting for the GIL (another thread) or for a CPU (other processes).
Logged, with the main thread's stacks sampled every 2 ms during it:

  ``+++ turn cpu C ms wall W ms``   every turn over 5 ms of CPU;
  ``=== stall W ms``                every turn over 20 ms on the wall clock;
  ``### watchdog slept W ms``       the sampler itself got no GIL or CPU for
                                    over 15 ms, with the stacks of the other
                                    busy threads (who held the GIL);

and at the end one line: turns, how many over 5 and 10 ms of CPU, the most
CPU and the longest wall time of a turn.  The sampler thread costs the
server a little (it asks for the GIL every 2 ms).
"""

import collections
import os
import sys
import threading
import time
import traceback

OUT = os.environ.get("REACTORTURNS_OUT", "/tmp/simplemail-reactorturns.txt")
CPU_LIMIT = 0.005
WALL_LIMIT = 0.020

sys.argv[0] = "twistd"
from twisted.internet import epollreactor  # noqa: E402

epollreactor.install()
from twisted.internet import reactor  # noqa: E402

_out = open(OUT, "w", buffering=1)
_main = threading.get_ident()
_state = {"start": None, "cpu": None, "samples": []}
_totals = {"turns": 0, "cpu5": 0, "cpu10": 0, "maxCpu": 0.0, "maxWall": 0.0}


class _Poller:
    """
    The reactor's epoll object, timing the turns between its polls.
    """

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def poll(self, *args):
        now = time.monotonic()
        if _state["start"] is not None:
            _turnEnded(now - _state["start"], time.thread_time() - _state["cpu"])
        _state["start"] = None
        try:
            return self.real.poll(*args)
        finally:
            _state["samples"] = []
            _state["start"] = time.monotonic()
            _state["cpu"] = time.thread_time()


def _turnEnded(wall, cpu):
    _totals["turns"] += 1
    _totals["maxCpu"] = max(_totals["maxCpu"], cpu)
    _totals["maxWall"] = max(_totals["maxWall"], wall)
    if cpu > CPU_LIMIT:
        _totals["cpu5"] += 1
        _totals["cpu10"] += cpu > 0.010
        _out.write("+++ turn cpu {:.1f} ms wall {:.1f} ms\n".format(cpu * 1000, wall * 1000))
    if wall > WALL_LIMIT or cpu > CPU_LIMIT:
        if wall > WALL_LIMIT:
            _out.write("=== stall {:.1f} ms\n".format(wall * 1000))
        for stack, count in collections.Counter(_state["samples"]).most_common(4):
            _out.write("-- {} samples:\n{}\n".format(count, stack))


def _watch():
    while True:
        before = time.monotonic()
        time.sleep(0.002)
        slept = time.monotonic() - before
        frames = sys._current_frames()
        start = _state["start"]
        if start is not None and time.monotonic() - start > 0.005 and _main in frames:
            _state["samples"].append("".join(traceback.format_stack(frames[_main], limit=12)))
        if slept > 0.015:
            busy = []
            for ident, frame in frames.items():
                if ident == threading.get_ident():
                    continue
                stack = traceback.format_stack(frame, limit=10)
                if any("queue.py" in line or "threading.py" in line for line in stack[-2:]):
                    continue
                busy.append("[{}]\n{}".format("MAIN" if ident == _main else ident,
                                              "".join(stack)))
            _out.write("### watchdog slept {:.1f} ms\n{}\n".format(slept * 1000,
                                                               "\n".join(busy)))


def _summary():
    _out.write("SUMMARY turns {turns}, over 5 ms CPU {cpu5}, over 10 ms CPU {cpu10}, "
               "most CPU {maxCpu:.4f} s, longest {maxWall:.4f} s\n".format(**_totals))


reactor._poller = _Poller(reactor._poller)
reactor.addSystemEventTrigger("before", "shutdown", _summary)
threading.Thread(target=_watch, daemon=True).start()

from twisted.scripts.twistd import run  # noqa: E402

run()
