"""
Starting an mbox reader from the search index's picture of its entries
rather than a scan of the whole file (no cold start; docs/search.rst).  A
mixin of L{twisted_mail.stores.spool.mboxfile.MboxFile}, for the mailbox
thread.
"""

import os

from twisted.logger import Logger

from twisted_mail.stores.spool.records import _messageKey

log = Logger()


class EntriesSnapshot:
    """
    C{snapshotSource}: called once, at the reader's first look, for the
    saved picture (C{(inode, size, entries)} or L{None}); L{None} for none.
    """

    snapshotSource = None

    def _fromSnapshot(self, handle):
        """
        Start from the search index's picture of the entries rather than
        scan the file, if it describes it: same inode, not longer, the
        messages it places (a sample, and the last) where it says.
        """
        source, self.snapshotSource = self.snapshotSource, None
        try:
            snapshot = source()
        except Exception:
            log.failure("mailbox {user}: entries snapshot unreadable", user=self.userid)
            return
        if snapshot is None:
            return
        ino, size, entries = snapshot
        if ino != handle.stat.st_ino or size > handle.stat.st_size or not entries:
            return
        if any(msgid is None or not uid for _, _, _, msgid, uid, _ in entries):
            return  # messages not stamped yet: the scan stamps them
        step = max(1, len(entries) // 32)
        for start, end, key, *_ in entries[::step] + entries[-1:]:
            if _messageKey(os.pread(handle.fd, end - start, start)) != key:
                return
        self._replaceAll(self._newEntries(entries))
        self._ino = ino
        self._size = size

    def entriesState(self):
        """
        The entries as the last job left them, for a snapshot: C{(inode,
        size, [(start, end, key, id or None if derived, uid, flags)])}.
        """
        return (self._ino or 0, self._size,
                [(e.start, e.end, e.key, None if e.derived else e.msgid, e.uid, e.flags)
                 for e in self.entries])

