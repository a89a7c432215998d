"""
Tests for L{tests.programs}.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from .programs import programEnvironment


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
