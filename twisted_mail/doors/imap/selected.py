"""
The commands of the selected state (RFC 3501 6.4, RFC 4315 UIDPLUS, RFC 6851
MOVE, RFC 3691 UNSELECT): FETCH streamed as the client reads it, STORE,
SEARCH, COPY, MOVE, EXPUNGE, CLOSE.  A mixin of
L{twisted_mail.doors.imap.server.IMAPServer}.
"""

import collections

from twisted.internet import defer

from twisted_mail import errors
from twisted_mail.doors.imap import fetch, parser, search, structure
from twisted_mail.doors.imap.folders import folderName, storeFlags
from twisted_mail.doors.imap.parser import BadCommand, SequenceSet

#: \Seen from FETCH BODY[] reaches the store in batches of this many.
SEEN_BATCH = 500

#: A FETCH asks the store for message texts in batches of at most this
#: many messages or bytes (one store job each), one batch ahead of what it
#: writes.
PREFETCH_BYTES = 128 * 1024
PREFETCH_COUNT = 128

_STORE_ITEMS = {"FLAGS": "", "+FLAGS": "+", "-FLAGS": "-"}


def formatSet(numbers):
    """
    A sequence set for a list of numbers (in the order given, runs
    joined), as COPYUID writes them.
    """
    out = []
    start = prev = None
    for n in numbers:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = n
    if start is not None:
        out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(out).decode("ascii")


class SelectedCommands:
    """
    The selected state's commands.
    """

    def _positions(self, token, uid):
        sequenceSet = SequenceSet.parse(token)
        if uid:
            return self.view.uidPositions(sequenceSet)
        return self.view.seqPositions(sequenceSet)

    def _writable(self):
        if self.view.readOnly:
            raise errors.ProtocolError("[READ-ONLY] the folder is selected read-only")

    # -- simple ones

    def do_CHECK(self, tag, args):
        parser.expectCount(args, 0)
        return ("OK", "CHECK completed")

    def do_UNSELECT(self, tag, args):
        parser.expectCount(args, 0)
        return self._deselect().addCallback(lambda _: ("OK", "UNSELECT completed"))

    def do_CLOSE(self, tag, args):
        parser.expectCount(args, 0)
        view = self.view
        if view.readOnly:
            return self._deselect().addCallback(lambda _: ("OK", "CLOSE completed"))
        ids = [view.summaries[p].id for p in range(len(view))
               if "\\Deleted" in view.flagsAt(p)]
        d = view.folder.deleteMessages(ids) if ids else defer.succeed([])
        d.addCallback(lambda _: self._deselect())
        return d.addCallback(lambda _: ("OK", "CLOSE completed"))

    # -- UID

    def do_UID(self, tag, args):
        if not args:
            raise BadCommand("UID wants a command")
        name = parser.atom(args[0])
        rest = args[1:]
        if name == "FETCH":
            return self.do_FETCH(tag, rest, uid=True)
        if name == "STORE":
            return self.do_STORE(tag, rest, uid=True)
        if name == "SEARCH":
            return self.do_SEARCH(tag, rest, uid=True)
        if name == "COPY":
            return self.do_COPY(tag, rest, uid=True)
        if name == "MOVE":
            return self.do_MOVE(tag, rest, uid=True)
        if name == "EXPUNGE":
            parser.expectCount(rest, 1)
            return self.do_EXPUNGE(tag, [], only=self._positions(rest[0], True))
        raise BadCommand("unknown UID command")

    # -- FETCH

    def do_FETCH(self, tag, args, uid=False):
        parser.expectCount(args, 2)
        view = self.view
        positions = self._positions(args[0], uid)
        items = fetch.parseItems(args[1])
        names = {i.name for i in items}
        if uid and "UID" not in names:
            items.insert(0, fetch.FetchItem("UID"))
        marking = not view.readOnly and any(i.setsSeen for i in items)
        if marking and "FLAGS" not in names:
            items.append(fetch.FetchItem("FLAGS"))
        textItems = [i for i in items if i.needsText]
        cachedOnly = all(i.name in ("ENVELOPE", "BODY", "BODYSTRUCTURE") for i in textItems)
        cache = self.factory.structureCache
        folder = view.folder
        state = {"missing": False, "seen": []}

        def markSeen(force=False):
            seen = state["seen"]
            if seen and (force or len(seen) >= SEEN_BATCH):
                state["seen"] = []
                folder.markSeen(seen)

        def render(position, summary, key, text):
            flags = view.flagsAt(position) if position < len(view) and \
                view.summaries[position] is summary else summary.flags
            return b"".join(fetch.renderMessage(
                position + 1, items, summary, text, flags, view.isRecent(position),
                cache, key))

        def renderBatch(texts, batch):
            out = []
            for (position, summary, key, needsText), text in zip(batch, texts):
                if not needsText:
                    out.append(render(position, summary, key, None))
                elif text is None:
                    state["missing"] = True
                else:
                    out.append(render(position, summary, key, structure.crlf(text)))
            return b"".join(out)

        def fetchBatch(batch):
            wanted = [summary.id for _, summary, _, needsText in batch if needsText]
            d = folder.fetchMessages(wanted) if wanted else defer.succeed([])

            def arrived(found):
                texts = iter(found)
                return renderBatch([next(texts) if entry[3] else None for entry in batch],
                                   batch)

            return d.addCallback(arrived)

        def pieces():
            # The texts are asked of the store in batches (PREFETCH_COUNT
            # messages or PREFETCH_BYTES, one store job each), one batch
            # ahead of the one being written, so that the store's thread is
            # never idle waiting for the reactor.
            ahead = collections.deque()
            batch = []
            batchBytes = 0
            for position in positions:
                summary = view.summaries[position]
                if summary.uid in view.gone:
                    state["missing"] = True
                    continue
                if marking:
                    flags = view.flagsAt(position)
                    if "\\Seen" not in flags:
                        view.setFlags(position, flags | {"\\Seen"})
                        state["seen"].append(summary.id)
                        markSeen()
                key = (view.userid, view.name, folder.uidValidity, summary.uid)
                needsText = bool(textItems) and not (cachedOnly and all(
                    cache.get(key, i.name) is not None for i in textItems))
                if not needsText and not batch and not ahead:
                    yield render(position, summary, key, None)
                    continue
                batch.append((position, summary, key, needsText))
                if needsText:
                    batchBytes += summary.size
                if batchBytes >= PREFETCH_BYTES or len(batch) >= PREFETCH_COUNT:
                    ahead.append(fetchBatch(batch))
                    batch, batchBytes = [], 0
                    if len(ahead) > 1:
                        yield ahead.popleft()
            if batch:
                ahead.append(fetchBatch(batch))
            while ahead:
                yield ahead.popleft()

        def done(_):
            markSeen(force=True)
            if state["missing"]:
                return ("NO", "[EXPUNGEISSUED] some of the messages no longer exist")
            return ("OK", "FETCH completed")

        return self.stream(pieces()).addCallback(done)

    # -- STORE

    def do_STORE(self, tag, args, uid=False):
        parser.expectCount(args, 3)
        view = self.view
        self._writable()
        positions = self._positions(args[0], uid)
        item = parser.atom(args[1])
        silent = item.endswith(".SILENT")
        if silent:
            item = item[:-len(".SILENT")]
        if item not in _STORE_ITEMS:
            raise BadCommand("unknown STORE item")
        try:
            flags = storeFlags(parser.flagList(args[2]))
        except errors.InvalidFlag as e:
            raise BadCommand(str(e))
        positions = [p for p in positions if view.summaries[p].uid not in view.gone]
        ids = [view.summaries[p].id for p in positions]
        mode = _STORE_ITEMS[item]
        if mode == "+":
            add, remove = flags, frozenset()
        elif mode == "-":
            add, remove = frozenset(), flags
        else:
            present = set()
            for p in positions:
                present |= view.flagsAt(p)
            add, remove = flags, frozenset(present - flags)
        before = {view.summaries[p].uid: view.flagsAt(p) for p in positions}
        d = view.folder.setFlags(ids, add, remove) if ids else defer.succeed([])

        def stored(changed):
            current = self.view
            if current is not view:
                return ("OK", "STORE completed")
            for summary in changed:
                position = view.positionOfUid(summary.uid)
                if position is not None:
                    view.setFlags(position, summary.flags)
            lines = view.newKeywords(add) if ids else []
            if not silent:
                for p in positions:
                    if p >= len(view):
                        continue
                    summary = view.summaries[p]
                    if before.get(summary.uid) == view.flagsAt(p):
                        continue  # unchanged: no FETCH, as Dovecot
                    uidPart = b"UID %d " % summary.uid if uid else b""
                    lines.append(b"* %d FETCH (%sFLAGS %s)\r\n" % (
                        p + 1, uidPart, fetch.formatFlags(view.flagsAt(p), view.isRecent(p))))
            self._write(b"".join(lines))
            return ("OK", "STORE completed")

        return d.addCallback(stored)

    # -- SEARCH

    def do_SEARCH(self, tag, args, uid=False):
        view = self.view
        try:
            tree = search.compileSearch(args, view, uid)
        except search.UnknownCharset:
            return ("NO", "[BADCHARSET (UTF-8 US-ASCII)] charset not supported")

        def found(positions):
            if uid:
                numbers = [view.summaries[p].uid for p in positions if p < len(view)]
            else:
                numbers = [p + 1 for p in positions]
            self._write(b"".join([b"* SEARCH"] + [b" %d" % n for n in numbers]) + b"\r\n")
            return ("OK", "SEARCH completed")

        return search.runSearch(self.factory.store, view, tree).addCallback(found)

    # -- COPY and MOVE

    def _copyOrMove(self, args, uid, move):
        parser.expectCount(args, 2)
        view = self.view
        if move:
            self._writable()
        positions = [p for p in self._positions(args[0], uid)
                     if view.summaries[p].uid not in view.gone]
        target = folderName(args[1])
        summaries = [view.summaries[p] for p in positions]
        ids = [s.id for s in summaries]
        if not ids:
            return defer.succeed((None, summaries, target))
        call = view.folder.moveMessages if move else view.folder.copyMessages
        d = call(ids, target)

        def noFolder(failure):
            failure.trap(errors.NoSuchFolder)
            raise errors.ProtocolError("[TRYCREATE] no such folder")

        def copied(pairs):
            if len(pairs) != len(ids):
                return (None, summaries, target)
            return self.uidValidityOf(target).addCallback(
                lambda validity: ("[COPYUID {} {} {}]".format(
                    validity, formatSet([s.uid for s in summaries]),
                    formatSet([u for _, u in pairs])), summaries, target))

        return d.addErrback(noFolder).addCallback(copied)

    def do_COPY(self, tag, args, uid=False):
        d = self._copyOrMove(args, uid, move=False)
        return d.addCallback(lambda r: ("OK", ((r[0] + " ") if r[0] else "") + "COPY completed"))

    def do_MOVE(self, tag, args, uid=False):
        view = self.view
        d = self._copyOrMove(args, uid, move=True)

        def moved(result):
            code, summaries, target = result
            if code:
                self._write(b"* OK " + code.encode("ascii") + b" moved\r\n")
            if self.view is view:
                self._write(b"".join(view.expunge([s.uid for s in summaries])))
            return ("OK", "MOVE completed")

        return d.addCallback(moved)

    # -- EXPUNGE

    def do_EXPUNGE(self, tag, args, only=None):
        parser.expectCount(args, 0)
        view = self.view
        self._writable()
        positions = range(len(view)) if only is None else only
        ids = [view.summaries[p].id for p in positions
               if "\\Deleted" in view.flagsAt(p)]
        d = view.folder.deleteMessages(ids) if ids else defer.succeed([])

        def deleted(gone):
            if self.view is view:
                goneIds = set(gone)
                uids = [s.uid for s in view.summaries if s.id in goneIds]
                self._write(b"".join(view.expunge(uids)))
            return ("OK", "EXPUNGE completed")

        return d.addCallback(deleted)


