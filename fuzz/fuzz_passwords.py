"""
The password file (L{twisted_mail.logins.portal}): C{PasswordFile.read},
C{setPassword}'s rewrite, and checking a password against whatever hash a
line holds.

The input is the file's contents.  Properties:

  - reading never raises (bytes that are not UTF-8, a byte order mark,
    odd line ends);
  - a line C{userid:hash} is found for its user (the last one if the
    user has several);
  - setting a password rewrites the file keeping every other entry as
    read, and the new one is found;
  - checking any password against any stored hash of the file answers
    yes or no (never an exception), and costs at most the scrypt work the
    server's own hashes cost several times over (hashlib's scrypt is
    replaced by a stub that checks its parameters: a hand-edited hash
    must not hold a login thread for hours).
"""

import contextlib
import os
import shutil
import tempfile
import types

from fuzz import harness

with harness.instrumented():
    from twisted_mail.errors import InvalidUserId
    from twisted_mail.logins import portal
    from twisted_mail.wire import normalizeUserId

#: The most scrypt work (r * N * p) a check may cost: 64 times what the
#: server's own parameters cost.
MOST_WORK = 64 * portal._R * portal._N * portal._P


def _scrypt(password, salt, n, r, p, dklen, maxmem=0):
    assert r * n * p <= MOST_WORK, ("scrypt work", n, r, p)
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or dklen < 1:
        raise ValueError("invalid scrypt parameters")
    return bytes(dklen)


_STUB_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="


@contextlib.contextmanager
def _stubbedHashing():
    """
    hashlib's scrypt replaced by L{_scrypt}, and new hashes by a fixed one,
    while a check runs (the real ones cost 50 ms each).
    """
    saved = portal.hashlib, portal.hashPassword
    portal.hashlib = types.SimpleNamespace(scrypt=_scrypt)
    portal.hashPassword = lambda password, salt=None: _STUB_HASH
    try:
        yield
    finally:
        portal.hashlib, portal.hashPassword = saved

#: The file the contents are written to (set by L{main} or a test).
_PATH = None


def _expected(contents):
    """
    What a reader of the file format should find: the last hash of each
    user id on a line of its own.
    """
    found = {}
    text = contents.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    for line in text.split("\n"):
        line = line.rstrip("\r")  # CRLF, or CRs before the line end
        userid, sep, stored = line.partition(":")
        try:
            if sep and normalizeUserId(userid) == userid:
                found[userid] = stored
        except InvalidUserId:
            pass
    return found


def check(contents):
    with _stubbedHashing():
        _check(contents)


def _check(contents):
    with open(_PATH, "wb") as f:
        f.write(contents)
    passwords = portal.PasswordFile(_PATH)
    hashes = passwords.read()
    for userid, stored in _expected(contents).items():
        assert hashes.get(userid) == stored, (userid, stored, hashes.get(userid))
    for userid, stored in list(hashes.items())[:4]:
        assert portal.verifyPassword("bob pw", stored) in (True, False)
    passwords.setPassword("newuser", "pw")
    after = passwords.read()
    assert after.pop("newuser") == _STUB_HASH
    hashes.pop("newuser", None)
    assert after == hashes, (hashes, after)


def _scratchFile():
    """
    A file in a directory of this process's own (in memory when
    C{/dev/shm} is there); those of earlier runs, whose processes are
    gone, are removed (libFuzzer ends a run without Python's atexit).
    """
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    prefix = "simplemail-fuzz-passwords-"
    for name in os.listdir(parent):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            try:
                os.kill(int(name[len(prefix):]), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(parent, name), True)
            except OSError:
                pass
    directory = os.path.join(parent, prefix + str(os.getpid()))
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, "passwords")


if __name__ == "__main__":
    _PATH = _scratchFile()
    harness.main(check)
