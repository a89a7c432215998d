"""
C{simplemail-passwd FILE USERID}: set or reset a user's password in the
server's password file (the file given to C{twistd simplemail --passwords}).

On a terminal it asks twice without echo; from a pipe it reads one line.
"""

import getpass
import sys

from twisted.python import usage

from twisted_mail import errors
from twisted_mail.logins.portal import PasswordFile
from twisted_mail.wire import normalizeUserId


class Options(usage.Options):
    synopsis = "Usage: simplemail-passwd FILE USERID"
    longdesc = (
        "Set or reset USERID's password in FILE (created, mode 0600, if "
        "missing). The password is read from the terminal twice without "
        "echo, or as one line from standard input when it is not a terminal. "
        "The server reads the file at every login: no restart is needed."
    )

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


def main(argv=None, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr):
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
        password = readPassword(stdin)
        PasswordFile(options["path"]).setPassword(options["userid"], password)
    except usage.UsageError as e:
        stderr.write("simplemail-passwd: {}\n".format(e))
        return 2
    except (KeyboardInterrupt, EOFError):
        stderr.write("\nsimplemail-passwd: interrupted; nothing changed\n")
        return 1
    except OSError as e:
        stderr.write("simplemail-passwd: {}: {}\n".format(options["path"], e.strerror))
        return 1
    stdout.write("password set for {}\n".format(options["userid"]))
    return 0


def run():
    sys.exit(main())


if __name__ == "__main__":
    run()
