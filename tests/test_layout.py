"""
Tests of the package's layout: imports run one way (no cycles; each part
imports only the parts below it, as README.rst's "How it is built" says),
and no module grows past what a reader can take in.
"""

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

import twisted_mail

PACKAGE = os.path.dirname(os.path.abspath(twisted_mail.__file__))

#: The most lines a module of the package may have.
MAX_LINES = 800

#: Each part of the package and the parts it may import (README.rst's map).
#: The contract (interfaces, errors, wire) imports nothing of ours.
FLOORS = {
    "contract": set(),
    "mail": {"contract"},
    "stores": {"contract", "mail"},
    "logins": {"contract"},
    "console": {"contract", "mail"},
    "doors": {"contract", "mail", "logins"},
    "service": {"contract", "mail", "stores", "logins", "doors"},
}

#: The old import paths kept for users' code (README.rst): each only
#: re-exports from its new place.
COMPATIBILITY = {"server", "spool", "client", "tap", "testing"}


def modules():
    """
    Every module of the package: C{{dotted name: path}}.
    """
    found = {}
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3]
                dotted = relative.replace(os.sep, ".")
                if dotted.endswith(".__init__"):
                    dotted = dotted[: -len(".__init__")]
                found[dotted] = path
    return found


def imports(dotted, path, known):
    """
    The modules of the package that C{dotted} imports, anywhere in it
    (functions' own imports too): C{from p import m} names the module
    C{p.m} when there is one, else C{p}.
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    isPackage = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = dotted.split(".")
                if not isPackage:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                if module + "." + alias.name in known:
                    found.add(module + "." + alias.name)
                elif module in known:
                    found.add(module)
    found.discard(dotted)
    return found


def floor(dotted):
    """
    The part of the package a module belongs to (a key of L{FLOORS}), or
    L{None} for the package itself and the old import paths.
    """
    parts = dotted.split(".")
    if len(parts) == 1 or parts[1] in ("__main__",):
        return None
    if len(parts) == 2:
        if parts[1] in ("interfaces", "errors", "wire"):
            return "contract"
        return None
    return parts[1]


def graph():
    known = modules()
    return known, {m: imports(m, p, known) for m, p in known.items()}


def findCycle(edges):
    """
    One import cycle in C{edges} as a list of modules, or L{None}.
    """
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(edges, WHITE)
    stack = []

    def visit(node):
        colour[node] = GREY
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if colour.get(target) == GREY:
                return stack[stack.index(target):] + [target]
            if colour.get(target) == WHITE:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(edges):
        if colour[node] == WHITE:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


class LayoutTests(SynchronousTestCase):
    def test_noImportCycle(self):
        """
        No module of the package imports, directly or through others, a
        module that imports it back.
        """
        _, edges = graph()
        self.assertIsNone(findCycle(edges))

    def test_cycleFound(self):
        """
        The cycle finder does find a cycle (so the test above can fail).
        """
        self.assertEqual(findCycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])
        self.assertIsNone(findCycle({"a": {"b"}, "b": {"c"}, "c": set()}))

    def test_importsRunDown(self):
        """
        Each part imports only the parts below it (README.rst's map): a
        door never imports a store, a store never a door, nothing but the
        service imports the service.
        """
        known, edges = graph()
        wrong = []
        for module, targets in sorted(edges.items()):
            mine = floor(module)
            if mine is None:
                continue
            for target in sorted(targets):
                theirs = floor(target)
                if theirs is None or theirs == mine:
                    if theirs is None and target.split(".")[-1] in COMPATIBILITY:
                        wrong.append("{} -> {} (an old import path)".format(module, target))
                    continue
                if theirs not in FLOORS[mine]:
                    wrong.append("{} -> {}".format(module, target))
        self.assertEqual(wrong, [])

    def test_compatibilityOnly(self):
        """
        The modules left at the top of the package are the contract, the
        entry points and the old import paths; every other module lives in
        a part.
        """
        known = modules()
        top = sorted(
            m.split(".", 1)[1]
            for m, path in known.items()
            if m.count(".") == 1 and not path.endswith("__init__.py")
        )
        self.assertEqual(
            top, sorted(COMPATIBILITY | {"__main__", "errors", "interfaces", "wire"})
        )

    def test_modulesShort(self):
        """
        No module of the package is longer than L{MAX_LINES} lines.
        """
        long = []
        for module, path in sorted(modules().items()):
            with open(path, encoding="utf-8") as f:
                n = sum(1 for _ in f)
            if n > MAX_LINES:
                long.append("{} ({} lines)".format(module, n))
        self.assertEqual(long, [])


class PackagingTests(SynchronousTestCase):
    """
    What setup.cfg ships matches the tree: moving a file must not drop it
    from an installed copy.
    """

    def setUp(self):
        import configparser

        self.config = configparser.ConfigParser()
        self.config.read(os.path.join(os.path.dirname(PACKAGE), "setup.cfg"))

    def test_entryPointsResolve(self):
        """
        Every console script of setup.cfg names a function that exists.
        """
        import importlib

        scripts = self.config["options.entry_points"]["console_scripts"]
        names = []
        for line in filter(None, (x.strip() for x in scripts.splitlines())):
            name, target = (x.strip() for x in line.split("=", 1))
            module, function = target.split(":")
            self.assertTrue(callable(getattr(importlib.import_module(module), function)), line)
            names.append(name)
        self.assertIn("simplemail", names)

    def test_dataFilesShipped(self):
        """
        Every file of the package that is not Python is named by a
        package_data pattern of setup.cfg.
        """
        import fnmatch

        patterns = {}
        for package, globs in self.config["options.package_data"].items():
            patterns[package] = [g.strip() for g in globs.split(",")]
        missing = []
        for root, dirs, files in os.walk(PACKAGE):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith((".py", ".pyc")):
                    continue
                path = os.path.relpath(os.path.join(root, name), os.path.dirname(PACKAGE))
                shipped = False
                for package, globs in patterns.items():
                    prefix = package.replace(".", "/") + "/"
                    if path.startswith(prefix) and any(
                        fnmatch.fnmatch(path[len(prefix):], g) for g in globs
                    ):
                        shipped = True
                if not shipped:
                    missing.append(path)
        self.assertEqual(missing, [])
