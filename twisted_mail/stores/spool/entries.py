"""
The light listing of a spool folder (L{IFolder.listEntries}): each live
message's id, UID, flags, size and arrival time, from the scan's entries
and the records' bytes, without parsing a header (what an IMAP SELECT
needs; the summaries a listing shows cost a MIME parse each).
"""

from twisted_mail.mail.dates import arrivalTime
from twisted_mail.mail.mime import MessageSummary, popSize
from twisted_mail.stores.spool.flags import readerText


#: A light listing that read this many records saves the entries snapshot.
SNAPSHOT_AFTER = 500


def recordFacts(record):
    """
    The POP3 size and the arrival time of an mbox record, as its summary
    gives them (no parse: the reader's text is cut out and counted).

    @return: C{(size, arrived)}.
    """
    newline = record.find(b"\n")
    arrived = arrivalTime(record[:newline]) if newline != -1 else 0
    return popSize(readerText(record)), arrived


def entryRows(mbox, summaries, facts):
    """
    The light listing's rows, in a mailbox job: C{(id, size, arrived, uid,
    flags)} of each live entry, and how many records were read.  Sizes and
    times come from C{summaries} (parsed ones) or C{facts} (earlier light
    listings, or the search index's entries snapshot), both keyed by
    C{(id, content key)}; the other records are read and their facts
    added to C{facts}.
    """
    rows = []
    read = 0
    with mbox.locked() as handle:
        if len(facts) > 2 * len(mbox.entries) + 100:
            facts.clear()  # forget messages gone: rebuilt below
        for entry in mbox.entries:
            if entry.deleted:
                continue
            key = (entry.msgid, entry.key)
            known = facts.get(key)
            if known is None:
                summary = summaries.get(key)
                if summary is not None:
                    known = (summary.size, summary.arrived)
                else:
                    known = facts[key] = recordFacts(mbox.read(handle, entry))
                    read += 1
            rows.append((entry.msgid, known[0], known[1], entry.uid, entry.flags))
    return rows, read


def listEntries(view):
    """
    L{IFolder.listEntries} of a spool folder view: after reading many
    records, their facts are kept in the search index's entries snapshot
    (no cold start after a restart; docs/search.rst).
    """
    mailbox = view._mailbox

    def listed(result):
        rows, read = result
        if read >= SNAPSHOT_AFTER and mailbox.index is not None:
            mailbox.index.saveSnapshot()
        return lightSummaries(rows, view.folder)

    return view._run(entryRows, mailbox.mbox, mailbox.summaries, mailbox.facts).addCallback(
        listed)


def lightSummaries(rows, folder):
    """
    The L{MessageSummary} values of L{entryRows}' rows.
    """
    return [MessageSummary(msgid, size, arrived, uid=uid, flags=flags, folder=folder)
            for msgid, size, arrived, uid, flags in rows]
