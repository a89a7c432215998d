"""
Search in the line protocol (CAPA C{SEARCH}; docs/protocol.rst, "Search"):
C{SRCH <query>} answers the newest matches of the selected folder (INBOX
unless the folder extension chose another) in C{LSTM}'s format, so that
C{READM <id>} reads any of them, as the console's C{Search} and C{Read <n>}
do.
"""

from twisted_mail import errors, wire
from twisted_mail.mail.model import INBOX
from twisted_mail.mail.query import parseQuery
from twisted_mail.doors.linefolders import listingLine

#: The most matches one C{SRCH} answers (the newest).
MAX_MATCHES = 500


class SearchCommands:
    """
    The C{SRCH} command of L{twisted_mail.doors.line.MailServerProtocol}.
    """

    def _searchedFolder(self):
        # The folder LSTM works on: the folder extension's choice, if any.
        view = getattr(self, "_view", None)
        return getattr(view(), "folder", INBOX) if view is not None else INBOX

    def do_SRCH(self, command):
        session = self._requireSession()
        if command.text is None or not command.text.strip():
            raise errors.ProtocolError("usage: SRCH <query>")
        query = parseQuery(command.text)
        d = self.factory.store.search(session.userid, query, self._searchedFolder(), 0,
                                      MAX_MATCHES)

        def found(listing):
            lines = [listingLine(m) for m in listing.messages]
            return wire.formatMultiline(
                "{} of {} message{} match".format(
                    len(lines), listing.total, "" if listing.total == 1 else "s"),
                lines)

        return d.addCallback(found)
