"""
Programs that are not ours (Debian's mbsync, offlineimap3, mutt, fetchmail,
swaks, getmail6, chromium) run by the tests: whether they are there, and
their environment.

Not a test module.
"""

import os
import shutil

from twisted.trial.unittest import FailTest, SkipTest


def programEnvironment(**extra):
    """
    This process's environment without the variables that configure a Python
    interpreter (C{PYTHONPATH}, C{PYTHONHOME} and every other C{PYTHON*}),
    with C{extra} added.

    They belong to the interpreter running the tests, not to the program's:
    C{trial -j} hands its workers a C{PYTHONPATH} naming this interpreter's
    standard library, and Debian's offlineimap3, run by C{/usr/bin/python3}
    with it, imported this interpreter's C{ssl} and died on its C{_ssl}
    extension (undefined symbol C{_PyModule_Add}); getmail6 is another
    such program.
    """
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PYTHON")}
    env.update(extra)
    return env


def missing(what, install):
    """
    Skip the calling test because C{what} is not installed, or, under CI
    (C{CI} set, as C{.ci/run} sets it), fail it: CI installs everything
    the tests use, so a skip there would hide a test that never ran.

    @param what: what is missing (C{"fetchmail"}, C{"selenium (the test
        extra)"}).
    @param install: how to install it (C{"apt-get install fetchmail"}).
    """
    if os.environ.get("CI"):
        raise FailTest("{} is not installed (.ci/run installs it)".format(what))
    raise SkipTest("{} is not installed ({})".format(what, install))


def unavailable(why):
    """
    Skip the calling test because of C{why} (a sentence: what it needs that
    is not there), or, under CI, fail it, as L{missing} does.
    """
    if os.environ.get("CI"):
        raise FailTest(why + " (CI must run this test)")
    raise SkipTest(why)


def needProgram(program, package):
    """
    L{missing} unless C{program} is on the C{PATH}.

    @param package: the Debian package holding it.
    """
    if shutil.which(program) is None:
        missing(program, "apt-get install " + package)
