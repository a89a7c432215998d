"""
The selected state of an IMAP session (RFC 3501 2.3.1.2, 5.2, 7.4.1): the
messages it has been told of, in sequence order, and the changes made
elsewhere that it has not been told of yet.

Changes arrive from L{IMailStore.watch} at any time; they are shown only
when RFC 3501 allows: new messages (C{EXISTS}) and flag changes (C{FETCH})
at the end of any command, expunges (C{EXPUNGE}) only at the end of a
command other than FETCH, STORE and SEARCH (their UID forms allow it), and
at once during IDLE.  Until its EXPUNGE is sent, an expunged message keeps
its sequence number.
"""

import bisect

from twisted_mail.doors.imap.fetch import formatFlags
from twisted_mail.doors.imap.parser import BadCommand

SYSTEM_FLAGS = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"


def keywordsOf(flags):
    """
    The keywords (not system flags) among C{flags}.
    """
    return {f for f in flags if not f.startswith("\\")}


class SelectedMailbox:
    """
    One session's view of its selected folder.

    @ivar folder: the store's L{IFolder}.
    @ivar name: the canonical folder name.
    @ivar readOnly: selected by EXAMINE.
    @ivar summaries: the messages shown, in sequence order (ascending UIDs).
    @ivar uids: their UIDs, in the same order.
    @ivar keywords: the keywords the session has been told of (C{FLAGS}).
    """

    def __init__(self, folder, name, summaries, readOnly=False):
        self.folder = folder
        self.userid = folder.userid
        self.name = name
        self.readOnly = readOnly
        self.summaries = list(summaries)
        self.uids = [s.uid for s in self.summaries]
        self.recent = set()
        self._flags = {}  # uid -> flags shown, where they differ from the summary
        self._new = {}
        self._changed = {}
        self._expunged = set()
        self.gone = set()  # expunged elsewhere, not yet announced
        # The highest UID this session has shown, expunged or not: UIDs only
        # grow, so a "message" event at or below it is one shown already
        # (APPEND shows its own at once; the store's event may come after
        # the session has expunged it).
        self._shownUpTo = self.uids[-1] if self.uids else 0
        self.keywords = frozenset().union(*(keywordsOf(s.flags) for s in self.summaries))

    def __len__(self):
        return len(self.summaries)

    # -- what the session shows

    def flagsAt(self, position):
        summary = self.summaries[position]
        return self._flags.get(summary.uid, summary.flags)

    def shown(self, position):
        """
        The summary at C{position} with the flags the session shows.
        """
        summary = self.summaries[position]
        flags = self._flags.get(summary.uid)
        return summary if flags is None else summary.replace(flags=flags)

    def setFlags(self, position, flags):
        uid = self.summaries[position].uid
        self._flags[uid] = frozenset(flags)
        # This session's own change is newer than a change noted before it.
        self._changed.pop(uid, None)

    def isRecent(self, position):
        return self.summaries[position].uid in self.recent

    def recentIds(self):
        return [s.id for s in self.summaries if s.uid in self.recent]

    def positionOfUid(self, uid):
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i
        return None

    def uidNext(self):
        return (self.uids[-1] + 1) if self.uids else 1

    def firstUnseen(self):
        for i in range(len(self.summaries)):
            if "\\Seen" not in self.flagsAt(i):
                return i + 1
        return None

    # -- the flags the folder has

    def flagsResponses(self):
        """
        The C{FLAGS} and C{PERMANENTFLAGS} responses: the system flags and
        the keywords of the folder's messages (as Dovecot lists them; a
        read-only session may change none).
        """
        flags = SYSTEM_FLAGS + b"".join(
            b" " + k.encode("ascii") for k in sorted(self.keywords))
        return [b"* FLAGS (" + flags + b")\r\n",
                b"* OK [PERMANENTFLAGS (" + (b"" if self.readOnly else flags + b" \\*")
                + b")] flags permitted\r\n"]

    def newKeywords(self, flags):
        """
        Note the keywords among C{flags}.

        @return: if some are new to the session, the C{FLAGS} and
            C{PERMANENTFLAGS} responses that tell it of them (RFC 3501
            7.2.6; Dovecot sends them before the FETCH that shows the
            keyword), else nothing.
        """
        new = keywordsOf(flags) - self.keywords
        if not new:
            return []
        self.keywords = self.keywords | new
        return self.flagsResponses()

    # -- sequence sets

    def seqPositions(self, sequenceSet, strict=True):
        """
        The positions of the messages a sequence-number set names.

        @raise BadCommand: (C{strict}) if it names a number past the last
            message, as Dovecot answers.
        """
        count = len(self.summaries)
        if count == 0:
            if strict:
                raise BadCommand("no messages in the folder")
            return []
        positions = []
        for low, high in sequenceSet.resolve(count):
            if high > count:
                if strict:
                    raise BadCommand("invalid message sequence number: {}".format(high))
                high = count
            positions.extend(range(low - 1, high))
        return positions

    def uidPositions(self, sequenceSet):
        """
        The positions of the messages a UID set names (absent UIDs are
        skipped; C{*} is the highest UID, even in C{n:*} with n above it).
        """
        if not self.uids:
            return []
        return sequenceSet.matching(self.uids, self.uids[-1])

    # -- changes made elsewhere

    def eventReceived(self, event):
        """
        Note a L{MailEvent} of this folder, to be shown when allowed.
        """
        if event.folder != self.name:
            return
        uid = event.uid
        if event.kind == "message" and event.summary is not None:
            if uid not in self._new and uid > self._shownUpTo:
                self._new[uid] = event.summary
        elif event.kind == "flags" and event.summary is not None:
            if uid in self._new:
                self._new[uid] = event.summary
            else:
                self._changed[uid] = event.summary.flags
        elif event.kind == "expunge":
            self._new.pop(uid, None)
            self._changed.pop(uid, None)
            if self.positionOfUid(uid) is not None:
                self._expunged.add(uid)
                self.gone.add(uid)

    def pending(self):
        return bool(self._new or self._changed or self._expunged)

    def expunge(self, uids):
        """
        Remove messages from the view (this session expunged them).

        @return: the untagged EXPUNGE responses, in order.
        """
        positions = sorted(p for p in (self.positionOfUid(u) for u in uids)
                           if p is not None)
        if not positions:
            return []
        lines = [b"* %d EXPUNGE\r\n" % (p + 1 - i) for i, p in enumerate(positions)]
        dropped = set(positions)
        self.summaries = [s for i, s in enumerate(self.summaries) if i not in dropped]
        self.uids = [s.uid for s in self.summaries]
        for uid in uids:
            self._flags.pop(uid, None)
            self._expunged.discard(uid)
            self.gone.discard(uid)
            self.recent.discard(uid)
        return lines

    def flush(self, allowExpunge=True):
        """
        The untagged responses for the changes made elsewhere that may be
        shown now.
        """
        lines = []
        if allowExpunge and self._expunged:
            expunged, self._expunged = self._expunged, set()
            lines.extend(self.expunge(expunged))
        announced = len(lines)
        seen = set()
        if self._new:
            new = sorted(self._new.items())
            self._new = {}
            added = [s for uid, s in new if uid > self._shownUpTo]
            if added:
                self._shownUpTo = added[-1].uid
                for summary in added:
                    seen |= summary.flags
                self.summaries.extend(added)
                self.uids.extend(s.uid for s in added)
                self.recent.update(s.uid for s in added)
                lines.append(b"* %d EXISTS\r\n" % len(self.summaries))
                lines.append(b"* %d RECENT\r\n" % len(self.recent))
        if self._changed:
            changed, self._changed = self._changed, {}
            for uid, flags in sorted(changed.items()):
                position = self.positionOfUid(uid)
                if position is None or self.flagsAt(position) == flags:
                    continue
                self._flags[uid] = flags
                seen |= flags
                lines.append(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (
                    position + 1, uid, formatFlags(flags, self.isRecent(position))))
        lines[announced:announced] = self.newKeywords(seen)
        return lines
