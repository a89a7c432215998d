"""
The environment for a program that is not ours (Debian's mbsync,
offlineimap3, mutt, fetchmail) run by the tests.

Not a test module.
"""

import os


def programEnvironment(**extra):
    """
    This process's environment without the variables that configure a Python
    interpreter (C{PYTHONPATH}, C{PYTHONHOME} and every other C{PYTHON*}),
    with C{extra} added.

    They belong to the interpreter running the tests, not to the program's:
    C{trial -j} hands its workers a C{PYTHONPATH} naming this interpreter's
    standard library, and Debian's offlineimap3, run by C{/usr/bin/python3}
    with it, imported this interpreter's C{ssl} and died on its C{_ssl}
    extension (undefined symbol C{_PyModule_Add}).
    """
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PYTHON")}
    env.update(extra)
    return env
