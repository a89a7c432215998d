"""
Tests for L{tests.programs}.
"""

import os

from twisted.trial.unittest import FailTest, SkipTest, SynchronousTestCase

from .programs import missing, needProgram, programEnvironment, unavailable


class ProgramEnvironmentTests(SynchronousTestCase):
    def test_noPythonVariables(self):
        """
        The variables that configure a Python interpreter are left out, the
        rest kept and the extra ones added.
        """
        self.patch(os, "environ", {"PYTHONPATH": "/ours", "PYTHONHOME": "/ours",
                                   "PYTHONSTARTUP": "/ours/start.py",
                                   "HOME": "/root", "LANG": "C.UTF-8"})
        self.assertEqual(programEnvironment(HOME="/tmp/home", TERM="vt100"),
                         {"HOME": "/tmp/home", "LANG": "C.UTF-8", "TERM": "vt100"})


class MissingTests(SynchronousTestCase):
    """
    A missing program skips a test, except under CI, where it fails it.
    """

    def test_skipsOutsideCI(self):
        self.patch(os, "environ", {"PATH": "/nowhere"})
        e = self.assertRaises(SkipTest, needProgram, "fetchmail", "fetchmail")
        self.assertEqual(str(e), "fetchmail is not installed (apt-get install fetchmail)")

    def test_failsUnderCI(self):
        self.patch(os, "environ", {"PATH": "/nowhere", "CI": "1"})
        e = self.assertRaises(FailTest, needProgram, "fetchmail", "fetchmail")
        self.assertEqual(str(e), "fetchmail is not installed (.ci/run installs it)")

    def test_installedProgram(self):
        """
        A program on the C{PATH} neither skips nor fails the test.
        """
        bin = self.mktemp()
        os.makedirs(bin)
        with open(os.path.join(bin, "fetchmail"), "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(os.path.join(bin, "fetchmail"), 0o755)
        self.patch(os, "environ", {"PATH": bin, "CI": "1"})
        self.assertIsNone(needProgram("fetchmail", "fetchmail"))

    def test_missingWhat(self):
        self.patch(os, "environ", {})
        e = self.assertRaises(SkipTest, missing, "schemathesis", "pip install -e '.[test]'")
        self.assertEqual(str(e), "schemathesis is not installed (pip install -e '.[test]')")

    def test_unavailable(self):
        """
        What is not a program: the sentence saying why, skipped outside CI
        and failed under it.
        """
        self.patch(os, "environ", {})
        e = self.assertRaises(SkipTest, unavailable, "Dovecot needs root")
        self.assertEqual(str(e), "Dovecot needs root")
        self.patch(os, "environ", {"CI": "1"})
        e = self.assertRaises(FailTest, unavailable, "Dovecot needs root")
        self.assertEqual(str(e), "Dovecot needs root (CI must run this test)")
