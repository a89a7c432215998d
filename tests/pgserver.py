"""
A PostgreSQL server for the tests of the PostgreSQL store.

Not a test module.  Unless C{SIMPLEMAIL_TEST_DATABASE} names a database
(a conninfo string or URL of a database the tests may empty), the first call
of L{cluster} starts a throwaway cluster, once per test process: C{initdb}
and C{pg_ctl} from C{/usr/lib/postgresql/<version>/bin} (the newest there),
in a temporary directory, listening only on a Unix socket in that
directory, with C{fsync} on (the server's defaults), run as the unprivileged
C{postgres} user when the tests run as root (C{initdb} and C{postgres}
refuse to run as root).  It is stopped and removed when the process exits.

Each test gets an empty database from L{freshDatabase}: the tables are
emptied (C{TRUNCATE}), which takes milliseconds, where creating a database
takes a checkpoint.

When neither C{SIMPLEMAIL_TEST_DATABASE} nor the PostgreSQL binaries are
there, L{skipReason} says why, and the tests skip -- except under CI
(C{CI} set), where they fail instead: CI must run them.
"""

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time

#: Bounds, in seconds.
START_TIMEOUT = 60.0

_cluster = None


class ClusterError(Exception):
    """
    The throwaway cluster could not be made or started.
    """


def _binaries():
    """
    The C{bin} directory of the newest PostgreSQL installed, or L{None}.
    """
    found = []
    for path in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        version = path.split("/")[-3]
        try:
            found.append((float(version), os.path.dirname(path)))
        except ValueError:
            continue
    if not found:
        return None
    return max(found)[1]


def _psycopg():
    try:
        import psycopg  # noqa: F401 (only whether it is there)
    except ImportError:
        return False
    return True


def skipReason():
    """
    Why the PostgreSQL tests cannot run here, or L{None} when they can.
    Under CI (C{CI} set) this is always L{None}: a missing server must fail
    the tests, not skip them.
    """
    if os.environ.get("CI"):
        return None
    if not _psycopg():
        return "psycopg is not installed (pip install -e '.[postgresql]')"
    if os.environ.get("SIMPLEMAIL_TEST_DATABASE"):
        return None
    if _binaries() is None:
        return ("no PostgreSQL here: install the postgresql package or set "
                "SIMPLEMAIL_TEST_DATABASE")
    return None


class Cluster:
    """
    A throwaway PostgreSQL cluster in a temporary directory.

    @ivar url: the conninfo string of its database C{simplemail}.
    """

    def __init__(self):
        self.bindir = _binaries()
        if self.bindir is None:
            raise ClusterError(
                "no PostgreSQL binaries under /usr/lib/postgresql: "
                "apt-get install postgresql, or set SIMPLEMAIL_TEST_DATABASE")
        self.base = tempfile.mkdtemp(prefix="simplemail-pg-")
        self.data = os.path.join(self.base, "data")
        self.logPath = os.path.join(self.base, "server.log")
        self.port = 5432  # only a socket name: the socket is in our directory
        self._asUser = []
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterError("running as root, and no postgres user to run the server")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            self._asUser = ["runuser", "-u", "postgres", "--"]
        self.url = "host={} port={} user=postgres dbname=simplemail".format(
            self.base, self.port)
        self.started = False

    def _run(self, *argv, timeout=START_TIMEOUT):
        done = subprocess.run(
            self._asUser + list(argv), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        if done.returncode != 0:
            raise ClusterError("{} failed ({}):\n{}\n{}".format(
                os.path.basename(argv[0]), done.returncode,
                done.stdout.decode("utf-8", "replace"), self.log()))
        return done.stdout

    def log(self):
        try:
            with open(self.logPath, "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _options(self):
        return ("-c listen_addresses='' -k {} -p {} -c fsync=on "
                "-c synchronous_commit=on -c max_connections=100".format(
                    self.base, self.port))

    def start(self):
        if not os.path.isdir(self.data):
            self._run(os.path.join(self.bindir, "initdb"), "-D", self.data,
                      "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--locale=C", "--no-sync")
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                  "-l", self.logPath, "-o", self._options(), "-w",
                  "-t", str(int(START_TIMEOUT)), "start")
        self.started = True

    def restart(self, mode="immediate"):
        """
        C{pg_ctl restart -m <mode>}: with C{immediate}, as a crash of the
        database server (every connection is cut; recovery at start).
        """
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                  "-l", self.logPath, "-o", self._options(), "-m", mode, "-w",
                  "-t", str(int(START_TIMEOUT)), "restart")

    def stop(self):
        if self.started:
            self.started = False
            try:
                self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                          "-m", "immediate", "-w", "stop", timeout=30)
            except (ClusterError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.base, ignore_errors=True)

    def createDatabase(self, name):
        import psycopg

        with psycopg.connect(self.url.replace("dbname=simplemail", "dbname=postgres"),
                             autocommit=True) as conn:
            conn.execute('CREATE DATABASE "{}"'.format(name))


def cluster():
    """
    The throwaway cluster of this test process, started on first use; or
    L{None} when C{SIMPLEMAIL_TEST_DATABASE} names the database to use.
    """
    global _cluster
    if os.environ.get("SIMPLEMAIL_TEST_DATABASE"):
        return None
    if _cluster is None:
        made = Cluster()
        atexit.register(made.stop)
        started = time.monotonic()
        made.start()
        made.createDatabase("simplemail")
        made.startSeconds = time.monotonic() - started
        _cluster = made
    return _cluster


def databaseURL():
    """
    The conninfo of the database the tests use (the throwaway cluster's,
    or C{SIMPLEMAIL_TEST_DATABASE}).
    """
    env = os.environ.get("SIMPLEMAIL_TEST_DATABASE")
    if env:
        return env
    return cluster().url


def freshDatabase():
    """
    The conninfo of the test database, emptied: no users, no messages
    (the schema is left in place; its version table says what it is).

    @rtype: L{str}
    """
    import psycopg

    url = databaseURL()
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'messages'"
            " AND schemaname = current_schema()").fetchone()[0]
        if exists:
            conn.execute("TRUNCATE messages, users CASCADE")  # and folders
        for table in ("login_counts", "web_sessions", "changes"):
            if conn.execute(
                    "SELECT count(*) FROM pg_tables WHERE tablename = %s"
                    " AND schemaname = current_schema()", [table]).fetchone()[0]:
                conn.execute("TRUNCATE " + table)
    return url
