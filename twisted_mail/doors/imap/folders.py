"""
The commands of the authenticated state (RFC 3501 6.3): folders (SELECT,
EXAMINE, CREATE, DELETE, RENAME, LIST, LSUB, STATUS, SUBSCRIBE,
UNSUBSCRIBE), APPEND with UIDPLUS's APPENDUID, NAMESPACE and ENABLE.  A
mixin of L{twisted_mail.doors.imap.server.IMAPServer}.
"""

import re

from twisted.internet import defer

from twisted_mail import errors
from twisted_mail.mail import model
from twisted_mail.doors.imap import parser, utf7
from twisted_mail.doors.imap.mailbox import SelectedMailbox
from twisted_mail.doors.imap.parser import Atom, BadCommand, String
from twisted_mail.doors.imap.structure import quote

_STATUS_ITEMS = frozenset(["MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN"])


def folderName(token):
    """
    The canonical folder name an argument names (modified UTF-7).

    @raise errors.InvalidFolderName: for bad UTF-7 or a name outside the
        rules of MAILBOX.md (a tagged NO).
    """
    raw = parser.astring(token)
    try:
        name = utf7.decode(raw)
    except utf7.BadUTF7 as e:
        raise errors.InvalidFolderName(str(e))
    if name.endswith(model.SEPARATOR) and len(name) > 1:
        name = name.rstrip(model.SEPARATOR)
    return model.normalizeFolderName(name)


def encodedName(name):
    return quote(utf7.encode(name))


def storeFlags(flags):
    """
    Flags a client gives to store (APPEND, STORE): \\Recent is the
    session's and is dropped, as Dovecot drops it.
    """
    return model.checkFlags(f for f in flags if f.lower() != "\\recent")


def _patternRegex(pattern):
    levels = pattern.split(model.SEPARATOR)
    if levels[0].upper() == model.INBOX:
        levels[0] = model.INBOX
    pattern = model.SEPARATOR.join(levels)
    out = []
    for c in pattern:
        if c == "*":
            out.append(".*")
        elif c == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class FolderCommands:
    """
    The authenticated state's commands.
    """

    _selecting = None

    # -- selecting

    def _deselect(self):
        view, self.view = self.view, None
        if self.state == "selected":
            self.state = "authenticated"
        if view is None:
            return defer.succeed(None)
        return defer.maybeDeferred(view.folder.close).addErrback(lambda _: None)

    def do_SELECT(self, tag, args, readOnly=False):
        parser.expectCount(args, 1, 2)
        name = folderName(args[0])
        store = self.factory.store
        userid = self.userid
        self._selecting = []
        closing = self.view is not None
        d = self._deselect()
        if closing:
            # RFC 7162 3.2.11 (RFC 9051 7.1): the folder selected before is
            # closed, whether or not the new one opens; Dovecot says so to
            # every client, QRESYNC or not.
            d.addCallback(lambda _: self._write(b"* OK [CLOSED] previous folder closed\r\n"))
        d.addCallback(lambda _: store.openFolder(userid, name))

        def opened(folder):
            def listed(listing):
                return store.listFolders(userid).addCallback(
                    lambda infos: (folder, listing, infos))

            def failed(failure):
                folder.close()
                return failure

            return folder.listEntries().addCallbacks(listed, failed)

        def selected(result):
            folder, listing, infos = result
            events, self._selecting = self._selecting, None
            if self._lost:
                folder.close()
                return ("NO", "connection lost")
            view = SelectedMailbox(folder, folder.folder, listing, readOnly)
            for event in events or ():
                view.eventReceived(event)
            self.view = view
            self.state = "selected"
            info = [i for i in infos if i.name == view.name]
            uidNext = max([view.uidNext()] + [i.uidNext for i in info])
            lines = view.flagsResponses() + [
                b"* %d EXISTS\r\n" % len(view),
                b"* 0 RECENT\r\n",
            ]
            unseen = view.firstUnseen()
            if unseen is not None:
                lines.append(b"* OK [UNSEEN %d] first unseen\r\n" % unseen)
            lines.append(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % folder.uidValidity)
            lines.append(b"* OK [UIDNEXT %d] predicted next UID\r\n" % uidNext)
            self._write(b"".join(lines))
            mode = "READ-ONLY" if readOnly else "READ-WRITE"
            return ("OK", "[{}] {} completed".format(mode, "EXAMINE" if readOnly else "SELECT"))

        def notSelected(failure):
            self._selecting = None
            return failure

        return d.addCallback(opened).addCallbacks(selected, notSelected)

    def do_EXAMINE(self, tag, args):
        return self.do_SELECT(tag, args, readOnly=True)

    def _noteSelecting(self, event):
        if self._selecting is not None:
            self._selecting.append(event)

    # -- folders

    def do_CREATE(self, tag, args):
        parser.expectCount(args, 1)
        name = folderName(args[0])
        return self.factory.store.createFolder(self.userid, name).addCallback(
            lambda _: ("OK", "CREATE completed"))

    def do_DELETE(self, tag, args):
        parser.expectCount(args, 1)
        name = folderName(args[0])
        return self.factory.store.deleteFolder(self.userid, name).addCallback(
            lambda _: ("OK", "DELETE completed"))

    def do_RENAME(self, tag, args):
        parser.expectCount(args, 2)
        old, new = folderName(args[0]), folderName(args[1])
        return self.factory.store.renameFolder(self.userid, old, new).addCallback(
            lambda _: ("OK", "RENAME completed"))

    def do_SUBSCRIBE(self, tag, args):
        # Every folder is subscribed: LSUB lists what LIST lists
        # (docs/imap.rst).
        parser.expectCount(args, 1)
        folderName(args[0])
        return ("OK", "SUBSCRIBE completed")

    def do_UNSUBSCRIBE(self, tag, args):
        parser.expectCount(args, 1)
        folderName(args[0])
        return ("OK", "UNSUBSCRIBE completed (every folder stays subscribed)")

    def do_LIST(self, tag, args, verb=b"LIST"):
        args = list(args)
        specialOnly = False
        if args and isinstance(args[0], list):
            options = [parser.atom(o) for o in args.pop(0)]
            specialOnly = "SPECIAL-USE" in options
        if len(args) == 4 and isinstance(args[2], Atom) and args[2].upper() == b"RETURN":
            args = args[:2]
        parser.expectCount(args, 2)
        reference = parser.astring(args[0])
        patterns = args[1] if isinstance(args[1], list) else [args[1]]
        try:
            reference = utf7.decode(reference)
            patterns = [utf7.decode(parser.astring(p)) for p in patterns]
        except utf7.BadUTF7 as e:
            return ("NO", "[CANNOT] " + str(e))
        if patterns == [""]:
            self._write(b'* ' + verb + b' (\\Noselect) "/" ""\r\n')
            return ("OK", verb.decode("ascii") + " completed")
        regexes = [_patternRegex(reference + p) for p in patterns]

        def listed(infos):
            names = {}
            for info in infos:
                names[info.name] = info
            implied = set()
            for name in names:
                levels = name.split(model.SEPARATOR)
                for i in range(1, len(levels)):
                    parent = model.SEPARATOR.join(levels[:i])
                    if parent not in names:
                        implied.add(parent)
            parents = set()
            for name in list(names) + list(implied):
                if model.SEPARATOR in name:
                    parents.add(name.rsplit(model.SEPARATOR, 1)[0])
            everything = sorted(set(names) | implied,
                                key=lambda n: (n != model.INBOX, n))
            lines = []
            for name in everything:
                if not any(r.match(name) for r in regexes):
                    continue
                info = names.get(name)
                special = info.special if info is not None else None
                if specialOnly and not special:
                    continue
                attributes = [b"\\HasChildren" if name in parents else b"\\HasNoChildren"]
                if info is None:
                    attributes.insert(0, b"\\Noselect")
                if special:
                    attributes.append(model.SPECIAL_USE_ATTRIBUTES[special].encode("ascii"))
                lines.append(b"* " + verb + b" (" + b" ".join(attributes) + b') "/" '
                             + encodedName(name) + b"\r\n")
            self._write(b"".join(lines))
            return ("OK", verb.decode("ascii") + " completed")

        return self.factory.store.listFolders(self.userid).addCallback(listed)

    def do_LSUB(self, tag, args):
        return self.do_LIST(tag, args, verb=b"LSUB")

    def do_STATUS(self, tag, args):
        parser.expectCount(args, 2)
        name = folderName(args[0])
        if not isinstance(args[1], list) or not args[1]:
            raise BadCommand("STATUS wants a list of items")
        items = [parser.atom(i) for i in args[1]]
        if not set(items) <= _STATUS_ITEMS:
            raise BadCommand("unknown STATUS item")

        def listed(infos):
            for info in infos:
                if info.name == name:
                    break
            else:
                raise errors.NoSuchFolder(name)
            values = {"MESSAGES": info.total, "RECENT": 0, "UIDNEXT": info.uidNext,
                      "UIDVALIDITY": info.uidValidity, "UNSEEN": info.unseen}
            view = self.view
            if view is not None and view.name == name:
                values["UIDNEXT"] = max(info.uidNext, view.uidNext())
                values["RECENT"] = len(view.recent)
            shown = b" ".join(b"%s %d" % (i.encode("ascii"), values[i]) for i in items)
            self._write(b"* STATUS " + encodedName(name) + b" (" + shown + b")\r\n")
            return ("OK", "STATUS completed")

        return self.factory.store.listFolders(self.userid).addCallback(listed)

    def do_APPEND(self, tag, args):
        parser.expectCount(args, 2, 4)
        name = folderName(args[0])
        message = args[-1]
        if not isinstance(message, String):
            raise BadCommand("APPEND wants the message as a literal")
        flags = ()
        arrived = None
        for extra in args[1:-1]:
            if isinstance(extra, list):
                flags = parser.flagList(extra)
            else:
                arrived = parser.dateTime(extra)
        try:
            flags = storeFlags(flags)
        except errors.InvalidFlag as e:
            raise BadCommand(str(e))
        store = self.factory.store
        userid = self.userid
        d = store.appendMessage(userid, name, bytes(message), flags, arrived)

        def appended(summary):
            view = self.view
            if view is not None and view.name == name and summary is not None:
                # RFC 3501 6.3.11: the session that has the folder selected
                # is told at once (EXISTS before the tagged OK, as Dovecot),
                # not when the store's event comes round.
                view.eventReceived(model.MailEvent("message", name, summary=summary))
            return self.uidValidityOf(name).addCallback(
                lambda validity: ("OK", "[APPENDUID {} {}] APPEND completed".format(
                    validity, summary.uid)))

        def noFolder(failure):
            failure.trap(errors.NoSuchFolder)
            return ("NO", "[TRYCREATE] no such folder")

        return d.addCallbacks(appended, noFolder)

    def uidValidityOf(self, name):
        """
        The UIDVALIDITY of a folder of the logged-in user.
        """
        if self.view is not None and self.view.name == name:
            return defer.succeed(self.view.folder.uidValidity)
        d = self.factory.store.openFolder(self.userid, name)

        def opened(folder):
            validity = folder.uidValidity
            return defer.maybeDeferred(folder.close).addBoth(lambda _: validity)

        return d.addCallback(opened)

    # -- the rest

    def do_NAMESPACE(self, tag, args):
        parser.expectCount(args, 0)
        self._write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        return ("OK", "NAMESPACE completed")

    def do_ENABLE(self, tag, args):
        # No extension that ENABLE turns on (CONDSTORE, UTF8=ACCEPT) is
        # served: nothing is enabled.
        if not args:
            raise BadCommand("ENABLE wants capability names")
        for a in args:
            parser.atom(a)
        self._write(b"* ENABLED\r\n")
        return ("OK", "ENABLE completed")
