"""
A throwaway Debian Dovecot 2.3 (C{dovecot-imapd}, C{dovecot-pop3d}) for the
differential tests and the benchmarks: started in the foreground from a
config file in a temporary directory, listening on 127.0.0.1 only, mbox
mail, plain passwords. Not a test module.

Dovecot runs as root and drops to C{nobody} for the mail (a static userdb),
so the mail, the index and the homes are owned by C{nobody}. The system
service is never touched: everything (sockets, state, log, index) is under
the server's own directory, which L{DovecotServer.close} removes after the
whole process group is gone. Every wait is bounded.

Typical use::

    dovecot = DovecotServer()
    self.addCleanup(dovecot.close)
    dovecot.addUser("bob", mboxBytes)
    dovecot.start()
    # dovecot.imapPort, dovecot.pop3Port
"""

import ctypes
import ctypes.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .programs import missing, needProgram, unavailable
from .serverprocess import freePort

#: Bounds, in seconds.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

#: The password of every user.
PASSWORD = "secret"

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
listen = 127.0.0.1
protocols = {protocols}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = {uid}
mail_location = mbox:{root}/mail/%u:INBOX={root}/inbox/%u:INDEX={root}/index/%u
namespace inbox {{
  inbox = yes
  separator = /
{special}}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imapPort}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3Port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
protocol pop3 {{
  mail_max_userip_connections = 100
}}
"""

#: The special-use folders every simplemail user has (MAILBOX.md): made
#: and subscribed by Dovecot too, so that both list the same folders.
SPECIAL = ("Sent", "Drafts", "Trash", "Junk", "Archive")


class DovecotError(Exception):
    """
    Dovecot did not start or stop as expected.
    """


def needDovecot():
    """
    Skip the calling test (fail it under CI) unless Dovecot can be run:
    its IMAP and POP3 servers are installed and this process is root (it
    drops to C{nobody} for the mail).
    """
    needProgram("dovecot", "dovecot-imapd dovecot-pop3d")
    for part in ("imap", "pop3"):
        if not os.path.exists("/usr/lib/dovecot/" + part):
            missing("Dovecot's " + part, "apt-get install dovecot-imapd dovecot-pop3d")
    if os.geteuid() != 0:
        unavailable("Dovecot needs root (it hands the mail to nobody)")


def _stopWithParent():
    """
    In the child before it runs Dovecot: SIGTERM it when the process that
    started it dies (Linux's C{PR_SET_PDEATHSIG}), so that a test run
    killed outright leaves no Dovecot behind.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def groupMembers(group):
    """
    The ids of the live (not zombie) processes of process group C{group}
    (from /proc).
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/{}/stat".format(entry), "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...: comm may hold spaces.
            fields = stat[stat.rfind(b")") + 2:].split()
            if fields[0] != b"Z" and int(fields[2]) == group:
                found.append(int(entry))
    return found


class DovecotServer:
    """
    One Dovecot master process (C{dovecot -F -c FILE}) and its children, in
    a process group of their own.

    @ivar root: the directory holding its config, mail, index and sockets
        (a new temporary one unless given; L{close} removes it only then).
    @ivar specialUse: whether every user has L{SPECIAL}'s folders, with
        their RFC 6154 attributes, subscribed (as in simplemail).
    @ivar imapPort: the IMAP port (after L{start}), or L{None}.
    @ivar pop3Port: the POP3 port (after L{start}), or L{None}.
    """

    def __init__(self, root=None, protocols=("imap", "pop3"), specialUse=True):
        self._ownRoot = root is None
        self.root = os.path.abspath(root or tempfile.mkdtemp(prefix="simplemail-dovecot-"))
        self.protocols = tuple(protocols)
        self.specialUse = specialUse
        self.imapPort = self.pop3Port = None
        self.process = None
        self._users = []
        self._nobody = pwd.getpwnam("nobody")
        os.makedirs(self.root, exist_ok=True)
        os.chmod(self.root, 0o755)
        for sub in ("run", "state", "mail", "inbox", "index", "home"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    def addUser(self, user, mbox=b""):
        """
        Add C{user} (password L{PASSWORD}) with C{mbox} as its INBOX file:
        its bytes, or a function that writes it, given its path.
        """
        self._users.append(user)
        with open(os.path.join(self.root, "passwd"), "a") as f:
            f.write("{}:{{PLAIN}}{}\n".format(user, PASSWORD))
        for sub in ("mail", "index", "home"):
            os.makedirs(os.path.join(self.root, sub, user), exist_ok=True)
        path = os.path.join(self.root, "inbox", user)
        if callable(mbox):
            mbox(path)
        else:
            with open(path, "wb") as f:
                f.write(mbox)
        self._chown()

    def _chown(self):
        for sub in ("mail", "inbox", "index", "home"):
            for dirpath, dirnames, filenames in os.walk(os.path.join(self.root, sub)):
                for name in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
                    os.chown(name, self._nobody.pw_uid, self._nobody.pw_gid)

    def inbox(self, user):
        """
        The bytes of C{user}'s INBOX file as Dovecot left them.
        """
        with open(os.path.join(self.root, "inbox", user), "rb") as f:
            return f.read()

    def _config(self):
        special = "".join(
            "  mailbox {} {{\n    special_use = \\{}\n    auto = subscribe\n  }}\n".format(
                name, name) for name in (SPECIAL if self.specialUse else ()))
        return _CONFIG.format(
            root=self.root, protocols=" ".join(self.protocols), special=special,
            uid=self._nobody.pw_uid, gid=self._nobody.pw_gid,
            imapPort=self.imapPort if "imap" in self.protocols else 0,
            pop3Port=self.pop3Port if "pop3" in self.protocols else 0)

    def start(self, timeout=START_TIMEOUT):
        """
        Start Dovecot and wait until each of its listeners greets.

        @raise DovecotError: if it exits or does not answer in time (its
            log is in the message).
        """
        deadline = time.monotonic() + timeout
        for attempt in range(5):
            self.imapPort = freePort()
            self.pop3Port = freePort()
            while self.pop3Port == self.imapPort:
                self.pop3Port = freePort()
            config = os.path.join(self.root, "dovecot.conf")
            with open(config, "w") as f:
                f.write(self._config())
            log = open(os.path.join(self.root, "stdout.log"), "ab")
            try:
                # A group of its own: stop() can kill every child even if
                # the master died without taking them along.
                self.process = subprocess.Popen(
                    ["dovecot", "-F", "-c", config], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True,
                    preexec_fn=_stopWithParent)
            finally:
                log.close()
            try:
                for protocol, port in (("imap", self.imapPort), ("pop3", self.pop3Port)):
                    if protocol in self.protocols:
                        self._waitGreeting(port, deadline)
                return self
            except DovecotError:
                exited = self.process.poll() is not None
                self.stop()
                if not (exited and "Address already in use" in self.log()) or attempt == 4:
                    raise

    def _waitGreeting(self, port, deadline):
        while True:
            if self.process.poll() is not None:
                raise DovecotError("dovecot exited with {}; log:\n{}".format(
                    self.process.returncode, self.log()))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    greeting = s.recv(200)
                if greeting.startswith((b"* OK", b"+OK")):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DovecotError("dovecot did not greet on port {}; log:\n{}".format(
                    port, self.log()))
            time.sleep(0.05)

    def log(self):
        """
        Dovecot's log and what it printed, as text.
        """
        text = []
        for name in ("stdout.log", "dovecot.log"):
            try:
                with open(os.path.join(self.root, name), "rb") as f:
                    text.append(f.read().decode("utf-8", "replace"))
            except FileNotFoundError:
                pass
        return "\n".join(text)

    def stop(self, timeout=STOP_TIMEOUT):
        """
        Stop Dovecot (SIGTERM to the master, which stops its children), then
        SIGKILL whatever is left of its process group. Safe to call at any
        time, any number of times.

        @raise DovecotError: if a process of the group survives SIGKILL.
        """
        if self.process is None:
            return
        group = self.process.pid
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.process.poll()
        deadline = time.monotonic() + timeout
        while True:
            left = groupMembers(group)
            if not left:
                break
            if time.monotonic() > deadline:
                raise DovecotError("dovecot's processes {} survived SIGKILL".format(left))
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.02)
            self.process.poll()

    def close(self):
        """
        L{stop}, then remove the directory if this object made it.
        """
        try:
            self.stop()
        finally:
            if self._ownRoot:
                shutil.rmtree(self.root, ignore_errors=True)
