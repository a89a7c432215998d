"""
One exception per condition a user can meet.

The text of each exception (C{str(exc)}) is written for the person at the
other end: the server sends it after C{-ERR}, the console prints it.  It never
holds a class name, a path or a traceback.
"""


class MailError(Exception):
    """
    Base class of every condition reported to a client as C{-ERR <text>}.
    """

    text = "mail error"

    def __init__(self, *args):
        super().__init__(*args)

    def __str__(self):
        try:
            return self.text.format(*self.args)
        except IndexError:
            # Raised without the detail its text names.
            return self.text.replace(": {0}", "").replace("{0}", "error")


class ProtocolError(MailError):
    """
    A command line could not be understood; the text says why.
    """

    text = "{0}"


class InvalidUserId(MailError):
    """
    A user id does not follow the rules (1 to 64 of A-Z a-z 0-9 . _ -,
    starting with a letter or digit, not ending in .lock).
    """

    text = "invalid user id: {0}"


class UserExists(MailError):
    text = "user already exists: {0}"


class NoSuchUser(MailError):
    text = "no such user: {0}"


class NoUserSelected(MailError):
    text = "no user selected (use USER <userid> first)"


class NoMoreMail(MailError):
    text = "No More Mail"


class NoCurrentMessage(MailError):
    text = "no current message (READM a message first; it may already be deleted)"


class MessageTooLarge(MailError):
    text = "message too large (limit {0} bytes); nothing was stored"


class TemporaryFailure(MailError):
    """
    The store could not complete an operation for a reason that may pass
    (a full disk, a lock held too long).  Nothing was acknowledged; the client
    may try again later.
    """

    text = "temporary failure, try again later: {0}"


class ServerError(MailError):
    """
    Raised on the client side when the server answered C{-ERR <text>}.
    """

    text = "{0}"


class MailboxUnavailable(MailError):
    """
    A spool file is there but cannot be used safely (a symlink, a hard link,
    not a regular file).  The server logs the details for the operator.
    """

    text = "mailbox of {0} is unavailable; the administrator has been told"


class LoginFailed(MailError):
    """
    A login failed.  One text for every reason, so that it tells nobody
    whether the user exists.
    """

    text = "login failed"


class LoginRequired(MailError):
    text = "log in first (USER <userid>, then PASS <password>)"


class NoSuchMessage(MailError):
    """
    No message with that id in the mailbox (never was, or deleted).
    """

    text = "no such message"


class MalformedMessage(MailError):
    """
    A message submitted whole (C{SENDM}) whose header section does not
    parse; nothing was stored.
    """

    text = "the message's header section does not parse: {0}"


class InvalidFolderName(MailError):
    """
    A folder name outside the rules of MAILBOX.md (empty, a control
    character, an empty, C{.} or C{..} level, over 255 UTF-8 bytes).
    """

    text = "invalid folder name: {0}"


class NoSuchFolder(MailError):
    """
    The user has no folder of that name.
    """

    text = "no such folder: {0}"


class FolderExists(MailError):
    """
    A folder of that name exists already.
    """

    text = "folder already exists: {0}"


class FolderNotChangeable(MailError):
    """
    INBOX can't be renamed or deleted, nor a special-use folder renamed.
    """

    text = "folder can't be changed that way: {0}"


class InvalidFlag(MailError):
    """
    A flag that is neither a system flag nor an atom keyword.
    """

    text = "invalid flag: {0}"


class TooManyKeywords(MailError):
    """
    The folder holds as many distinct keywords as a store keeps.
    """

    text = "too many distinct keywords in this folder"


class InvalidQuery(MailError):
    """
    A search query that does not parse (the reason follows).
    """

    text = "bad search: {0}"
