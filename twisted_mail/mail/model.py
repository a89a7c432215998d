"""
The mailbox model of the third wave (MAILBOX.md, "The mailbox model"): folder
names and the special-use folders, flags and keywords, what a store says of
a folder (L{FolderInfo}) and the events it announces (L{MailEvent}).  Pure
values and checks, shared by every store and every door.
"""

import re
import unicodedata

from twisted_mail import errors
from twisted_mail.wire import escapeControls

#: The name of the folder every door that knows no folders works on.
INBOX = "INBOX"

#: The special-use folders (RFC 6154) every user has, made when first
#: needed: name -> the C{special} value of the web API.
SPECIAL_FOLDERS = {
    "Sent": "sent",
    "Drafts": "drafts",
    "Trash": "trash",
    "Junk": "junk",
    "Archive": "archive",
}

#: RFC 6154's attribute of each special value, for IMAP's LIST.
SPECIAL_USE_ATTRIBUTES = {
    "sent": "\\Sent",
    "drafts": "\\Drafts",
    "trash": "\\Trash",
    "junk": "\\Junk",
    "archive": "\\Archive",
}

#: The separator of folder levels.
SEPARATOR = "/"

#: The longest folder name, in UTF-8 bytes.
MAX_FOLDER_NAME = 255

#: The system flags (RFC 3501 2.3.2) a message may carry.  C{\Recent} is
#: a session's, not a message's, and is never stored.
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = frozenset([SEEN, ANSWERED, FLAGGED, DELETED, DRAFT])

#: Keywords kept per folder, at least (MAILBOX.md: at least 64).
MAX_KEYWORDS = 64

# An IMAP atom (RFC 3501 9, "atom"): no atom-specials, no CTL, no space;
# keywords of mail programs are such atoms ($Forwarded, $Junk, NonJunk).
_ATOM = re.compile(r"[!#$&'+\-.0-9:;<=>?@A-Z\[^_`a-z|}~,]{1,64}\Z")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def normalizeFolderName(name):
    """
    The canonical form of a folder name, or L{errors.InvalidFolderName}.

    Unicode NFC; C{/} separates levels; at most L{MAX_FOLDER_NAME} UTF-8
    bytes; no control characters; no empty, C{.} or C{..} level; C{INBOX}
    in any case is C{INBOX} (and so is its first level: C{inbox/x} is
    C{INBOX/x}).

    @type name: L{str}
    @rtype: L{str}
    """
    if not isinstance(name, str):
        raise errors.InvalidFolderName(escapeControls(name, keep="", limit=80))
    name = unicodedata.normalize("NFC", name)
    shown = escapeControls(name, keep="", limit=80)
    if not name or _CONTROL.search(name) or len(name.encode("utf-8")) > MAX_FOLDER_NAME:
        raise errors.InvalidFolderName(shown)
    levels = name.split(SEPARATOR)
    if any(level in ("", ".", "..") for level in levels):
        raise errors.InvalidFolderName(shown)
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    return SEPARATOR.join(levels)


def specialUse(name):
    """
    The special-use value of a canonical folder name (C{"sent"}, ...), or
    L{None}.
    """
    return SPECIAL_FOLDERS.get(name)


def checkFlags(flags):
    """
    Check flags a client asks to set or clear: system flags (any case, as
    IMAP allows) and keywords that are atoms.

    @param flags: an iterable of L{str}.
    @return: a L{frozenset} of the flags, system flags in their canonical
        case.
    @raise errors.InvalidFlag: for anything else (C{\\Recent} included).
    """
    canonical = {f.lower(): f for f in SYSTEM_FLAGS}
    checked = set()
    for flag in flags:
        if not isinstance(flag, str):
            raise errors.InvalidFlag(escapeControls(flag, keep="", limit=80))
        if flag.startswith("\\"):
            known = canonical.get(flag.lower())
            if known is None:
                raise errors.InvalidFlag(escapeControls(flag, keep="", limit=80))
            checked.add(known)
        elif _ATOM.match(flag):
            checked.add(flag)
        else:
            raise errors.InvalidFlag(escapeControls(flag, keep="", limit=80))
    return frozenset(checked)


class FolderInfo:
    """
    What a store says of one folder.

    @ivar name: the canonical name.
    @ivar special: the special-use value (C{"sent"}, ...) or L{None}.
    @ivar total: how many messages it holds.
    @ivar unseen: how many of them lack C{\\Seen}.
    @ivar uidValidity: its C{UIDVALIDITY} (RFC 3501 2.3.1.1), 1 to 2**32-1.
    @ivar uidNext: the UID the next message added to it will get at least.
    """

    __slots__ = ("name", "special", "total", "unseen", "uidValidity", "uidNext")

    def __init__(self, name, total=0, unseen=0, uidValidity=1, uidNext=1, special=None):
        self.name = name
        self.special = special if special is not None else specialUse(name)
        self.total = total
        self.unseen = unseen
        self.uidValidity = uidValidity
        self.uidNext = uidNext

    def asDict(self):
        """
        The JSON form of the web API's folder list.
        """
        return {"name": self.name, "special": self.special, "total": self.total,
                "unseen": self.unseen}

    def __eq__(self, other):
        if not isinstance(other, FolderInfo):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return "<FolderInfo {!r} {}/{} uv={} next={}>".format(
            self.name, self.unseen, self.total, self.uidValidity, self.uidNext)


class MailEvent:
    """
    One change a store announces to a watcher (L{IMailStore.watch}).

    @ivar kind: C{"message"} (a new message; C{summary} is its
        L{MessageSummary}), C{"flags"} (a message's flags changed;
        C{summary} is its summary as it is now), C{"expunge"} (a message is
        gone for good from C{folder}; C{msgid} and C{uid} name it) or
        C{"folders"} (folders were created, renamed or deleted).
    @ivar folder: the folder it happened in (L{None} for C{"folders"}).
    """

    __slots__ = ("kind", "folder", "msgid", "uid", "summary")

    def __init__(self, kind, folder=None, msgid=None, uid=None, summary=None):
        self.kind = kind
        self.folder = folder
        self.summary = summary
        self.msgid = msgid if msgid is not None or summary is None else summary.id
        self.uid = uid if uid is not None or summary is None else summary.uid

    def __eq__(self, other):
        if not isinstance(other, MailEvent):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return "<MailEvent {} {!r} {}>".format(self.kind, self.folder, self.msgid)
