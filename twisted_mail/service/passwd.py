"""
C{simplemail-passwd [--spool DIR | --database URL] FILE USERID}: set or
reset a user's password in the server's password file (the file given to
C{twistd simplemail --passwords}), and make the user's mailbox when it is
missing.

An operator who sets a password expects an account that works: a password
without a mailbox was a half-account (it could log in to submission and
send, but mail to it was refused and POP3 refused the login).  So a new
user's password is set only together with the mailbox: with the server's
C{--spool DIR} or C{--database URL}, the mailbox is made if missing; without
either, a name that has no password yet is refused with one line.  Resetting
the password of a name already in the file needs neither.

On a terminal it asks twice without echo; from a pipe it reads one line.
"""

import getpass
import os
import sys

from twisted.python import usage
from twisted.python.failure import Failure

from twisted_mail import errors
from twisted_mail.logins.portal import PasswordFile
from twisted_mail.stores.base import AtOnce
from twisted_mail.wire import normalizeUserId


class Options(usage.Options):
    synopsis = "Usage: simplemail-passwd [--spool DIR | --database URL] FILE USERID"
    longdesc = (
        "Set or reset USERID's password in FILE (created, mode 0600, if "
        "missing), and make USERID's mailbox in the server's spool directory "
        "or database if it has none. A new user needs --spool or --database "
        "(the server's); resetting a password needs neither. The password is "
        "read from the terminal twice without echo, or as one line from "
        "standard input when it is not a terminal. The server reads the file "
        "at every login: no restart is needed."
    )

    optParameters = [
        ["spool", "s", None, "The server's spool directory (its --spool)."],
        ["database", None, None, "The server's PostgreSQL database (its --database)."],
    ]

    def postOptions(self):
        if self["spool"] and self["database"]:
            raise usage.UsageError("give --spool or --database, not both")

    def parseArgs(self, path, userid):
        self["path"] = path
        try:
            self["userid"] = normalizeUserId(userid)
        except errors.InvalidUserId as e:
            raise usage.UsageError(str(e))


def readPassword(stdin, ask=None):
    """
    The new password: asked twice on a terminal, one line from a pipe.

    @raise usage.UsageError: when it is empty or the two differ.
    """
    if ask is None:
        ask = getpass.getpass
    if stdin.isatty():
        first = ask("New password: ")
        if ask("Again: ") != first:
            raise usage.UsageError("the passwords differ; nothing changed")
    else:
        first = stdin.readline().rstrip("\r\n")
    if not first:
        raise usage.UsageError("the password is empty; nothing changed")
    return first


def _store(options):
    """
    The store of the server's C{--spool} or C{--database}, or L{None}.

    @raise usage.UsageError: when the spool directory does not exist or the
        database cannot be used.
    """
    if options["spool"]:
        from twisted_mail.stores.spool.store import SpoolStore

        if not os.path.isdir(options["spool"]):
            raise usage.UsageError(
                "no spool directory {}: give the server's --spool".format(options["spool"]))
        return SpoolStore(options["spool"], reactor=AtOnce())
    if options["database"]:
        from twisted_mail.stores.postgres.sql import DatabaseUnavailable, checkDatabase
        from twisted_mail.stores.postgres.store import PostgresStore

        try:
            checkDatabase(options["database"])
        except DatabaseUnavailable as e:
            raise usage.UsageError("cannot use the database: {}".format(e))
        at = AtOnce()
        return PostgresStore(options["database"], reactor=at, threadpool=at)
    return None


def makeMailbox(store, userid):
    """
    Make C{userid}'s mailbox in C{store} if it has none.

    @return: L{True} if it was made.
    @raise usage.UsageError: when the store fails.
    """
    results = []
    store.addUser(userid).addBoth(results.append)
    result = results[0]
    if not isinstance(result, Failure):
        return True
    if result.check(errors.UserExists):
        return False
    raise usage.UsageError("cannot make the mailbox of {}: {}; nothing changed".format(
        userid, result.getErrorMessage()))


def main(argv=None, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr):
    options = Options()
    store = None
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
        userid = options["userid"]
        passwordFile = PasswordFile(options["path"])
        store = _store(options)
        if store is None and passwordFile.lookup(userid) is None:
            raise usage.UsageError(
                "{} has no password yet: give the server's --spool DIR or "
                "--database URL, so that its mailbox is made too; nothing "
                "changed".format(userid))
        password = readPassword(stdin)
        made = store is not None and makeMailbox(store, userid)
        passwordFile.setPassword(userid, password)
        if made:
            stdout.write("mailbox made for {}\n".format(userid))
    except usage.UsageError as e:
        stderr.write("simplemail-passwd: {}\n".format(e))
        return 2
    except (KeyboardInterrupt, EOFError):
        stderr.write("\nsimplemail-passwd: interrupted; nothing changed\n")
        return 1
    except OSError as e:
        stderr.write("simplemail-passwd: {}: {}\n".format(options.get("path", "output"), e.strerror))
        return 1
    finally:
        if store is not None:
            store.close()
    stdout.write("password set for {}\n".format(options["userid"]))
    return 0


def run():
    sys.exit(main())


if __name__ == "__main__":
    run()
