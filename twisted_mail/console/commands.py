# -*- test-case-name: tests.test_console_mail -*-
"""
The console's typed commands: their table (names, arguments, help) and a
C{cmd_<NAME>} method for each, mixed into L{twisted_mail.console.MailConsole},
which reads the lines, runs one command at a time and shows the prompts.

Each command returns a L{Deferred} when it asks the server (the console
waits for it) or L{None} when it is answered locally.
"""

import os
import re

from twisted_mail.console import render
from twisted_mail import wire
from twisted_mail.console.terminal import SECRET, TEXT

class _CommandError(Exception):
    """
    A typed command is wrong for the current prompt or malformed; it is
    answered locally, with C{str()} of this.
    """


#: command name -> (the name as shown, its arguments, what it does).  In the
#: arguments, C{<x>} is required, C{[x]} optional; the last argument of a
#: command in L{_REST} takes the rest of the line.
_COMMANDS = {
    "LISTUSERS": ("Listusers", "", "list the users"),
    "ADDUSER": ("Adduser", "<userid>", "create a user"),
    "SETUSER": ("SetUser", "<userid>", "work as a user: read, delete and send mail"),
    "LIST": ("List", "", "list the messages, numbered"),
    "READ": ("Read", "[n]", "show the next message, or message n of the last List"),
    "SEARCH": ("Search", "<query>", "list the messages a search finds, numbered like List"),
    "RAW": ("Raw", "", "show the message read last as it is stored"),
    "SAVE": ("Save", "<k> <file>", "write attachment k of the message read last to a file"),
    "DELETE": ("Delete", "", "delete the message shown last"),
    "SEND": (
        "Send",
        "<receiverid> [subject]",
        "send a message; end it with a line holding ###",
    ),
    "FOLDERS": ("Folders", "", "list the folders, with unread counts"),
    "FOLDER": ("Folder", "<name>", "work in another folder (INBOX at first)"),
    "FLAG": ("Flag", "[flag]", "flag the message read last (or: seen, answered, a keyword)"),
    "UNFLAG": ("Unflag", "[flag]", "take a flag off it (Unflag seen: mark it unread)"),
    "MOVE": ("Move", "<folder>", "move the message read last to a folder"),
    "DONE": ("Done", "", "stop working as this user"),
    "QUIT": ("Quit", "", "leave"),
    "HELP": ("Help", "", "show this list"),
}

#: Commands whose last argument is the rest of the line (spaces kept).
_REST = frozenset(["SAVE", "SEND", "FOLDER", "MOVE", "SEARCH"])

#: The commands of a server whose CAPA lists FOLDERS (listed after Send).
_FOLDER_COMMANDS = ("FOLDERS", "FOLDER", "FLAG", "UNFLAG", "MOVE")

#: What Flag and Unflag accept for the system flags, besides their names.
_FLAG_NAMES = {"seen": "\\Seen", "read": "\\Seen", "flagged": "\\Flagged",
               "answered": "\\Answered", "draft": "\\Draft", "deleted": "\\Deleted"}

#: Commands whose first argument is an existing user id (for completion).
_TAKES_USER = frozenset(["SETUSER", "SEND"])

_MAIN_COMMANDS = ("LISTUSERS", "ADDUSER", "SETUSER", "QUIT", "HELP")
_SUB_COMMANDS = (
    "LISTUSERS",
    "ADDUSER",
    "SETUSER",
    "LIST",
    "SEARCH",
    "READ",
    "RAW",
    "SAVE",
    "DELETE",
    "SEND",
    "DONE",
    "QUIT",
    "HELP",
)


def _usage(name):
    shown, args, _ = _COMMANDS[name]
    return (shown + " " + args).strip()


def _arity(name):
    """
    How many arguments a command takes: C{(least, most)}.
    """
    args = _COMMANDS[name][1].split()
    required = sum(1 for a in args if a.startswith("<"))
    return required, len(args)


def _splitWords(text, count):
    """
    Split C{text} at runs of spaces into at most C{count} + 1 words, the
    last holding the rest of the line as typed (only its ends stripped).
    """
    words = []
    rest = text.strip(" \t")
    while rest and len(words) < count:
        word, _, rest = rest.partition(" ")
        words.append(word)
        rest = rest.lstrip(" ")
    if rest:
        words.append(rest.rstrip(" \t"))
    return words




class MailCommands:
    """
    The commands of L{twisted_mail.console.MailConsole} (a mixin: it
    relies on the console's C{client}, C{_write}, C{_writeLine},
    C{_showError}, C{_showPrompt}, C{_prompt}, C{_run} and friends).
    """

    def _commandsHere(self):
        if self.userid is None:
            return _MAIN_COMMANDS
        if self._folders:
            at = _SUB_COMMANDS.index("SEND") + 1
            return _SUB_COMMANDS[:at] + _FOLDER_COMMANDS + _SUB_COMMANDS[at:]
        return _SUB_COMMANDS

    def complete(self, before):
        """
        What could complete the last word of C{before}, the text left of
        the cursor on a command line (for Tab): a command name of this
        prompt, or a user id where one is expected.

        @rtype: L{list} of L{str}
        """
        words = before.split(" ")
        word = words[-1]
        if len(words) == 1:
            names = [_COMMANDS[name][0] for name in self._commandsHere()]
            return [n for n in names if n.lower().startswith(word.lower())]
        typed = [w for w in words[:-1] if w]
        if len(typed) == 1 and typed[0].upper() in _TAKES_USER:
            return [u for u in self._users if u.startswith(word.lower())]
        return []

    def _knownUser(self, userid):
        """
        Remember a user id for completion (a server with passwords lists
        its users only after a login).
        """
        if userid not in self._users:
            self._users = sorted(self._users + [userid])

    def _refreshUsers(self):
        """
        Fetch the user ids for Tab completion (on a line editor only: piped
        sessions send nothing more than before).

        @return: a L{Deferred} firing when they are known (never failing),
            or L{None}.
        """
        if not self._editing:
            return None

        def listed(users):
            self._users = list(users)

        return self.client.listUsers().addCallbacks(listed, lambda f: None)

    # Showing replies

    def _showText(self, text, default):
        self._writeLine(text or default)

    def _showUsers(self, users):
        self._users = list(users)
        if not users:
            self._writeLine("no users")
        for userid in users:
            self._writeLine(userid)

    def _showMessage(self, message, readable=None):
        """
        Show a message read: readably (see L{render.renderMessage}), or as
        stored; either way it is the message C{Raw} and C{Save} work on.
        """
        self._lastMessage = message
        self._lastParsed = None
        if readable is None:
            readable = self._readable
        if readable:
            text, self._lastParsed = render.renderMessage(message)
            self._write(text)
            return
        text = message.decode("utf-8", "replace")
        if text and not text.endswith("\n"):
            text += "\n"
        self._write(wire.escapeControls(text))

    # Commands: each returns a Deferred (the server is asked) or None.

    def _userId(self, userid):
        return wire.normalizeUserId(userid)

    def cmd_LISTUSERS(self):
        """
        C{Listusers}: show the user ids, one a line.
        """
        return self.client.listUsers().addCallback(self._showUsers)

    def _askSecret(self, prompt, take):
        """
        Show C{prompt} and hand the next line, unechoed on a terminal, to
        C{take} instead of reading it as a command.
        """
        self._ask(prompt, take, SECRET)

    def _ask(self, prompt, take, kind=TEXT):
        """
        Show C{prompt} and hand the next line to C{take} instead of reading
        it as a command (a password with C{kind} L{SECRET}: not echoed).
        """
        self._showPrompt(prompt, kind)
        if kind == SECRET and not self._editing:
            self._echo(False)
        self._secret = take
        self._secretKind = kind

    def _afterSecret(self, d):
        """
        Wait for the command started with a password, like any command.
        """
        if d is None:
            self._prompt()
        else:
            self._run(d)

    def cmd_ADDUSER(self, userid):
        """
        C{Adduser <userid>}: create a user.  When the server wants
        passwords, ask for the new user's password twice first.
        """
        userid = self._userId(userid)

        def add(password=None):
            d = self.client.addUser(userid, password)
            d.addCallback(self._showText, "user {} added".format(userid))
            d.addCallback(lambda _: self._knownUser(userid))
            d.addCallback(lambda _: self._refreshUsers())
            return d

        if not self._passwords:
            return add()

        def first(password):
            self._askSecret(self.againPrompt, lambda again: second(password, again))

        def second(password, again):
            if password != again:
                self._showError("the passwords differ; user not added")
                return self._afterSecret(None)
            if not password.strip():
                self._showError("a password cannot be empty; user not added")
                return self._afterSecret(None)
            self._afterSecret(add(password))

        self._askSecret(self.passwordPrompt, first)
        return None

    def cmd_SETUSER(self, userid):
        """
        C{SetUser <userid>}: select a user; on success the sub-prompt
        names it.  When the server wants passwords, ask for it.
        """
        userid = self._userId(userid)

        def selected(text):
            self.userid = userid
            self._knownUser(userid)
            self._forget()
            self._showText(text, "working as " + userid)

        if not self._passwords:
            return self.client.selectUser(userid).addCallback(selected)

        def loggedIn(text):
            selected(text)
            return self._refreshUsers()

        def askPassword(text):
            # USER ended any session on the server: until the password is
            # accepted, nobody is selected.
            self.userid = None
            self._askSecret(
                self.passwordPrompt,
                lambda password: self._afterSecret(
                    self.client.login(password).addCallback(loggedIn)
                ),
            )

        return self.client.selectUser(userid).addCallback(askPassword)

    def _forget(self, folder="INBOX"):
        """
        A new user or folder: no List, no message read, in C{folder}.
        """
        self.folder = folder
        self._listing = None
        self._lastMessage = self._lastParsed = self._lastId = None

    def cmd_LIST(self):
        """
        C{List}: the messages of the folder, numbered (see
        L{render.renderListing}), unread ones marked when the server keeps
        flags; C{Read <n>} reads message n of it.
        """

        def listed(messages):
            self._listing = messages
            self._write(render.renderListing(messages, self._localtime))

        if self._folders:
            return self.client.listMessagesWithFlags().addCallback(listed)
        return self.client.listMessages().addCallback(listed)

    def cmd_FOLDERS(self):
        """
        C{Folders}: the folders, each with its messages and unread ones.
        """
        return self.client.listFolders().addCallback(
            lambda folders: self._write(render.renderFolders(folders)))

    def cmd_FOLDER(self, name):
        """
        C{Folder <name>}: List, Read, Delete, Flag and Move work in that
        folder from now on; the prompt names it (but INBOX).
        """

        def selected(text):
            # "<canonical name>: 3 messages, 1 unread" (docs/protocol.rst).
            canonical, sep, _ = (text or "").rpartition(": ")
            self._forget(canonical if sep else name)
            self._showText(text, "working in " + name)

        return self.client.selectFolder(name).addCallback(selected)

    def _readId(self):
        """
        The id of the message read last, or C{.}: the server's current
        message (the one plain C{Read} showed).
        """
        if self._lastMessage is None:
            raise _CommandError("no message read yet: Read one first")
        return self._lastId or "."

    def _flagCommand(self, flag, add):
        msgid = self._readId()
        flag = _FLAG_NAMES.get((flag or "flagged").lower(), flag or "\\Flagged")
        return self.client.setFlags(msgid, [flag], add).addCallback(
            self._showText, "flags changed")

    def cmd_FLAG(self, flag=None):
        """
        C{Flag [flag]}: give the message read last (with C{Read <n>}) a
        flag: C{\\Flagged} by default; C{seen}, C{answered}, C{draft} or a
        keyword.
        """
        return self._flagCommand(flag, True)

    def cmd_UNFLAG(self, flag=None):
        """
        C{Unflag [flag]}: take a flag off the message read last
        (C{Unflag seen} marks it unread).
        """
        return self._flagCommand(flag, False)

    def cmd_MOVE(self, folder):
        """
        C{Move <folder>}: move the message read last to another folder; it
        keeps its id.
        """
        msgid = self._readId()

        def moved(text):
            self._lastMessage = self._lastParsed = self._lastId = None
            self._showText(text, "moved to " + folder)

        return self.client.moveMessage(msgid, folder).addCallback(moved)
    def cmd_SEARCH(self, query):
        """
        C{Search <query>}: the messages a search finds (docs/search.rst),
        newest first, numbered as C{List} numbers them; C{Read <n>} reads
        message n of it.
        """

        def listed(messages):
            self._listing = messages
            self._write(render.renderListing(messages, self._localtime))

        return self.client.searchMessages(query).addCallback(listed)

    def cmd_READ(self, number=None):
        """
        C{Read}: show the next message (readably on a terminal, as stored
        when piped, as before).  C{Read <n>}: show message n of the last
        C{List}, readably.
        """
        if number is None:
            self._lastId = None
            return self.client.readMessage().addCallback(self._showMessage)
        if self._listing is None:
            raise _CommandError("no list yet: type List first")
        try:
            index = int(number)
        except ValueError:
            raise _CommandError("usage: " + _usage("READ"))
        if not 1 <= index <= len(self._listing):
            raise _CommandError(
                "no message {} in the last List (it has {})".format(
                    number, _count(len(self._listing), "message")
                )
            )
        msgid = self._listing[index - 1].id

        def read(message):
            self._showMessage(message, True)
            self._lastId = msgid

        return self.client.readMessageById(msgid).addCallback(read)

    def cmd_RAW(self):
        """
        C{Raw}: the message read last, as it is stored.
        """
        if self._lastMessage is None:
            raise _CommandError("no message read yet: Read one first")
        self._showMessage(self._lastMessage, readable=False)
        return None

    def cmd_SAVE(self, number, path):
        """
        C{Save <k> <file>}: write attachment k of the message read last.
        An existing file is overwritten only when the user says so on a
        terminal; piped, it is left alone.
        """
        if self._lastMessage is None:
            raise _CommandError("no message read yet: Read one first")
        if self._lastParsed is None:
            _, self._lastParsed = render.renderMessage(self._lastMessage)
        parts = self._lastParsed.parts
        try:
            index = int(number)
        except ValueError:
            raise _CommandError("usage: " + _usage("SAVE"))
        if not 1 <= index <= len(parts):
            raise _CommandError(
                "no attachment {} (the message has {})".format(
                    number, _count(len(parts), "attachment")
                )
            )
        part = parts[index - 1]
        path = os.path.expanduser(path)
        if os.path.exists(path) or os.path.islink(path):
            if os.path.isdir(path):
                raise _CommandError("{} is a directory; give a file name".format(path))
            if self._terminal is None:
                raise _CommandError("{} exists; not overwritten".format(path))

            def answered(answer):
                if answer.strip().lower() in ("y", "yes"):
                    self._writePart(part, path, overwrite=True)
                else:
                    self._writeLine("not saved")
                self._prompt()

            self._ask("{} exists; overwrite it? [y/N] ".format(wire.escapeControls(path)), answered)
            return None
        self._writePart(part, path, overwrite=False)
        return None

    def _writePart(self, part, path, overwrite):
        try:
            content = part.content()
            with open(path, "wb" if overwrite else "xb") as f:
                f.write(content)
        except FileExistsError:
            self._showError("{} exists; not overwritten".format(path))
        except FileNotFoundError:
            self._showError(
                "cannot write {}: no such directory: {}".format(
                    path, os.path.dirname(path) or "."
                )
            )
        except OSError as e:
            self._showError("cannot write {}: {}".format(path, e.strerror or e))
        else:
            self._writeLine(
                "saved attachment {} ({}, {}) to {}".format(
                    part.part,
                    part.filename,
                    render.formatSize(len(content)),
                    path,
                )
            )

    def cmd_DELETE(self):
        """
        C{Delete}: delete the message shown last.
        """
        d = self.client.deleteMessage()
        d.addCallback(self._showText, "message deleted")
        return d

    def cmd_SEND(self, receiver, subject=None):
        """
        C{Send <receiverid> [subject]}: ask the server about the receiver;
        if it accepts, show C{Type Message: } and take lines up to one
        holding C{###} as the message (see L{_messageLine}).  On a
        terminal, C{Send <receiverid>} asks C{Subject: } first.  A message
        with a subject goes out whole, with C{SENDM}; one without, with
        C{SEND}.
        """
        receiver = self._userId(receiver)
        if subject is not None:
            _checkSubject(subject)
            return self._startSend(receiver, subject)
        if self._terminal is None:
            return self._startSend(receiver, None)

        def answered(subject):
            try:
                _checkSubject(subject)
            except _CommandError as e:
                self._showError(str(e))
                self._prompt()
                return
            self._run(self._startSend(receiver, subject.strip()))

        self._ask(self.subjectPrompt, answered)
        return None

    def _startSend(self, receiver, subject):
        def accepted(text):
            self._message = []
            self._subject = subject
            self._showPrompt(self.messagePrompt, TEXT)

        if subject:
            d = self.client.startSendMessage(receiver)
        else:
            d = self.client.startSend(receiver)
        return d.addCallback(accepted)

    def cmd_DONE(self):
        """
        C{Done}: end the user session, back to the main prompt.
        """

        def done(text):
            self.userid = None
            self._forget()
            self._showText(text, "done")

        return self.client.done().addCallback(done)

    def cmd_QUIT(self):
        """
        C{Quit}: show the server's reply and exit 0.
        """
        self._quitting = True

        def answered(text):
            self._showText(text, "bye")
            self._exit(0)

        def failed(failure):
            self._showError(failure.getErrorMessage())
            self._exit(1)

        return self.client.quit().addCallbacks(answered, failed)

    def cmd_HELP(self):
        """
        C{Help}: list the commands of the current prompt (locally).
        """
        lines = ["commands:"]
        for name in self._commandsHere():
            usage = _usage(name)
            gap = " " if len(usage) < 20 else "  "
            lines.append("  {:<20}{}{}".format(usage, gap, _COMMANDS[name][2]))
        if self._editing:
            lines.append("keys: arrows, Home/End, Ctrl-A/E/K/U/W edit the line;")
            lines.append("  Up/Down recall commands; Tab completes; Ctrl-C clears; Ctrl-D quits")
        self._writeLine("\n".join(lines))
        return None


def _count(n, noun):
    return "{} {}{}".format(n, noun, "" if n == 1 else "s")


_SUBJECT_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _checkSubject(subject):
    """
    @raise _CommandError: the subject holds control characters.
    """
    if _SUBJECT_CONTROL.search(subject):
        raise _CommandError("a subject cannot hold control characters; nothing sent")
