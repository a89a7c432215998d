"""
The tests pass or fail by what the code does, never by the clock (issue 23,
item 17): a loaded CI machine must never fail a correct change, nor pass a
wrong one.  This scans the tests for the two shapes that broke that:

  - a wall-clock bound: an assertion comparing elapsed real time (an
    argument that calls C{time.monotonic}/C{time.time}/C{perf_counter} or a
    reactor's C{seconds}, or a variable named C{elapsed}) to less than
    L{GENEROUS} seconds; how
    soon something happens is checked with a fake clock (L{task.Clock}), and
    real-time tests wait for the event itself, bounded only generously;
  - an assertion right after a fixed sleep: a negative check made after
    "long enough" passes vacuously on a slow machine; wait for a positive
    marker first (an event that comes after what must not happen).

What it proves: no test under tests/ has either shape (the tests that had
them on main f6b73e7, in test_web_e2e, test_workers_e2e, test_pgintegration,
test_pgstore and test_web_browser, fail this test there).  What it cannot
prove: a timing dependence in another shape; tests/test_crash.py's torn
append is made deterministic separately (the kernel stops the append at a
set byte, no race with a kill).
"""

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

TESTS = os.path.dirname(os.path.abspath(__file__))

_CLOCKS = {"monotonic", "time", "perf_counter", "seconds"}
#: Seconds: a wall-clock comparison with a bound at least this wide (a
#: date checked to be current) is not a speed test.
GENEROUS = 30

_BOUNDS = {"assertLess", "assertLessEqual", "assertGreater", "assertGreaterEqual"}


def _callName(node):
    """
    The last name of a call's function (C{time.sleep} -> C{"sleep"}).
    """
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _readsClock(node):
    for child in ast.walk(node):
        if isinstance(child, ast.Call) and _callName(child) in _CLOCKS and not child.args:
            return True
        if isinstance(child, ast.Name) and "elapsed" in child.id.lower():
            return True
    return False


def _sleeps(statement):
    """
    Whether a statement is a fixed wait: C{time.sleep(n)},
    C{deferToThread(time.sleep, n)}, C{deferLater(...)}, yielded, awaited
    or not.  (A loop that sleeps while it polls for a condition is not.)
    """
    if not isinstance(statement, ast.Expr):
        return False
    for child in ast.walk(statement):
        if not isinstance(child, ast.Call):
            continue
        name = _callName(child)
        if name in ("sleep", "deferLater"):
            return True
        if name == "deferToThread" and child.args and (
            isinstance(child.args[0], ast.Attribute) and child.args[0].attr == "sleep"
        ):
            return True
    return False


def _asserts(statement):
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
        return False
    name = _callName(statement.value)
    return bool(name) and (name.startswith("assert") or name == "fail")


def clockProblems(source, filename="<test>"):
    """
    The clock-dependent shapes in a test module's source.

    @return: a L{list} of C{"file:line: what"} texts.
    """
    problems = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _callName(node) in _BOUNDS:
            numbers = [arg.value for arg in node.args if isinstance(arg, ast.Constant)
                       and isinstance(arg.value, (int, float))]
            # A date checked to be "now" within minutes is not a speed test.
            tight = not numbers or min(numbers) < GENEROUS
            if tight and any(_readsClock(arg) for arg in node.args):
                problems.append("{}:{}: an assertion bounds elapsed wall-clock time".format(
                    filename, node.lineno))
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if not isinstance(statements, list):
                continue
            for before, after in zip(statements, statements[1:]):
                if isinstance(before, ast.stmt) and _sleeps(before) and _asserts(after):
                    problems.append(
                        "{}:{}: an assertion right after a fixed sleep".format(
                            filename, after.lineno))
    return sorted(problems, key=lambda p: int(p.split(":")[1]))


class ClockFreeTests(SynchronousTestCase):
    def test_noTestDependsOnTheClock(self):
        """
        No test bounds elapsed wall-clock time, and none asserts right after
        a fixed sleep.
        """
        problems = []
        for name in sorted(os.listdir(TESTS)):
            if name.startswith("test_") and name.endswith(".py"):
                with open(os.path.join(TESTS, name), encoding="utf-8") as f:
                    problems += clockProblems(f.read(), name)
        self.assertEqual(problems, [])

    def test_findsTheShapes(self):
        """
        The scan finds a wall-clock bound (direct or through an C{elapsed}
        variable) and an assertion after a sleep, and accepts a fake-clock
        test and a wait for a marker.
        """
        bad = (
            "def test_a(self):\n"
            "    started = time.monotonic()\n"
            "    self.assertLess(time.monotonic() - started, 2)\n"
            "def test_b(self):\n"
            "    self.assertLess(elapsed, 2.0)\n"
            "def test_c(self):\n"
            "    yield threads.deferToThread(time.sleep, 0.5)\n"
            "    self.assertNoResult(d)\n"
            "def test_d(self):\n"
            "    time.sleep(1.5)\n"
            "    self.assertEqual(hits, [])\n"
            "def test_e(self):\n"
            "    self.assertLessEqual(reactor.seconds() - sent, 2.0)\n"
        )
        self.assertEqual(
            [p.split(": ", 1)[0] for p in clockProblems(bad, "x")],
            ["x:3", "x:5", "x:8", "x:11", "x:13"])
        good = (
            "def test_a(self):\n"
            "    clock.advance(2)\n"
            "    self.assertLess(len(heard), 2)\n"
            "def test_b(self):\n"
            "    while not done():\n"
            "        time.sleep(0.02)\n"
            "    self.assertEqual(hits, [])\n"
        )
        self.assertEqual(clockProblems(good, "y"), [])
