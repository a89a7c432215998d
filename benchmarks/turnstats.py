"""
Run twistd simplemail recording the length of each of its reactor's turns
and how many ready descriptors each turn handled (issue 22's LSTU probe:
how long a short command can wait behind one turn).  Pass it to load.py as
the twistd wrapper:

    .venv/bin/python benchmarks/load.py --servers simplemail --rounds 1 \\
        --twistd-wrapper benchmarks/turnstats.py
    cat /tmp/simplemail-turnstats.txt             # TURNSTATS_OUT to change

A turn is the time from one return of ``epoll.poll`` to the next call of
it: the reactor thread's wall time and its own CPU time
(``time.thread_time``).  At shutdown one line per measure gives the turns'
percentiles (turns that handled no event, the idle wake-ups, left out) and
the share of the wall time spent in turns with that many events or more.
Unlike reactorturns.py, no sampling thread: the server runs as it would.
"""

import os
import sys
import time

OUT = os.environ.get("TURNSTATS_OUT", "/tmp/simplemail-turnstats.txt")

sys.argv[0] = "twistd"
from twisted.internet import epollreactor  # noqa: E402

epollreactor.install()
from twisted.internet import reactor  # noqa: E402

#: (wall, cpu, events) of every turn that handled an event.
_turns = []
_state = {"start": None, "cpu": 0.0, "events": 0}


def _timedPoll(*args):
    """
    The reactor's C{epoll.poll}, ending the turn that called it and starting
    the next.
    """
    start = _state["start"]
    if start is not None and _state["events"]:
        _turns.append((time.monotonic() - start, time.thread_time() - _state["cpu"],
                       _state["events"]))
    result = _realPoller.poll(*args)
    _state["start"] = time.monotonic()
    _state["cpu"] = time.thread_time()
    _state["events"] = len(result)
    return result


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else 0


def _summary():
    with open(OUT, "w") as out:
        out.write("turns with events: {}\n".format(len(_turns)))
        for name, index, scale in (("wall ms", 0, 1000), ("cpu ms", 1, 1000),
                                   ("events", 2, 1)):
            values = [t[index] * scale for t in _turns]
            out.write("{:8} p50 {:.2f}  p90 {:.2f}  p99 {:.2f}  max {:.2f}\n".format(
                name, _pct(values, 50), _pct(values, 90), _pct(values, 99),
                max(values, default=0)))
        total = sum(t[0] for t in _turns) or 1
        for least in (1, 5, 10, 20, 40):
            share = sum(t[0] for t in _turns if t[2] >= least) / total
            out.write("wall time in turns of >= {} events: {:.0%}\n".format(least, share))


# An epoll object's attributes cannot be set: a stand-in passes all but
# poll through.
_realPoller = reactor._poller
reactor._poller = type("TimedEpoll", (), {
    "__getattr__": lambda self, name: getattr(_realPoller, name),
    "poll": staticmethod(_timedPoll),
})()
reactor.addSystemEventTrigger("before", "shutdown", _summary)

from twisted.scripts.twistd import run  # noqa: E402

run()
