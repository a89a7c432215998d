"""
The storage interface the server protocol is written against.

Every method returns a L{Deferred}; the failures each may carry are listed in
its docstring and come from L{twisted_mail.errors}.  Any other failure is a
bug or an unexpected environment problem: the server logs it and answers
C{-ERR internal error}.
"""

from zope.interface import Attribute, Interface


class IMailStore(Interface):
    """
    A set of users, each with a mailbox.
    """

    def listUsers():
        """
        The user ids, sorted.

        @rtype: L{Deferred} firing with a L{list} of L{str}.
        """

    def addUser(userid):
        """
        Create a user with an empty mailbox.

        @type userid: L{str}
        @return: a L{Deferred} firing with the canonical user id once the
            mailbox exists durably.  It fails with L{InvalidUserId} or
            L{UserExists}.
        """

    def hasUser(userid):
        """
        Check that a user exists.

        @return: a L{Deferred} firing with the canonical user id, or failing
            with L{InvalidUserId} or L{NoSuchUser}.
        """

    def openMailbox(userid):
        """
        Start a session on a user's mailbox.

        @return: a L{Deferred} firing with an L{IMailboxSession}, or failing
            with L{InvalidUserId} or L{NoSuchUser}.
        """

    def deliver(sender, receiver, body):
        """
        Store a message from C{sender} to C{receiver}.

        The store adds the headers (C{From:}, C{To:}, C{Date:},
        C{Message-ID:}) and normalises line endings.

        @param sender: the sending user id.
        @param receiver: the receiving user id.
        @param body: the body: L{bytes}, or a L{list} of bytes-like blocks
            that together make it, each but the last ending at the end of a
            line (so that a large body need not be joined into one string).
        @return: a L{Deferred} firing with the new message's id (in the
            receiver's INBOX) only once the message is stored for good (on
            disk and synced, for a disk store).  It fails
            with L{InvalidUserId}, L{NoSuchUser}, L{MessageTooLarge} (nothing
            stored) or L{TemporaryFailure} (nothing stored).
        """


    def deliverMessage(envelopeSender, receiver, message):
        """
        Store a complete message as given (for mail arriving by SMTP).

        @param envelopeSender: the envelope sender address for the mbox
            C{From } line, L{str}; empty for the null sender.
        @param receiver: the receiving user id.
        @param message: RFC 5322 text: headers, blank line, body; L{bytes},
            or a L{list} of L{bytes} or L{bytearray} pieces that make it, each
            but the last ending at the end of a line.  Line endings are
            normalised; nothing else is changed.
        @return: a L{Deferred} as for L{deliver}, with the same failures.
        """

    def subscribe(userid, listener):
        """
        Be told of new mail for C{userid}, through any door: deliveries made
        through this store object at once, deliveries by other processes
        sharing the store within 2 seconds.

        @param listener: called on the reactor thread with one
            L{twisted_mail.mail.mime.MessageSummary} per new message, in mailbox
            order.  It must not raise.
        @return: a no-argument callable that ends the subscription (calling
            it again does nothing).  Subscribing to a user that does not
            exist is allowed: nothing is announced until it does.
        """


    # -- the mailbox model (MAILBOX.md): folders, UIDs, flags, events,
    # search.  Folder names are canonical per
    # twisted_mail.mail.model.normalizeFolderName (a store normalises what
    # it is given, and fails with InvalidFolderName); INBOX is the mailbox
    # every folder-less door works on.  Ids are unique per user across
    # folders; a move keeps a message's id, a copy makes a new one.

    def listFolders(userid):
        """
        The user's folders, INBOX first, then by name; the special-use
        folders (Sent, Drafts, Trash, Junk, Archive) are always listed
        (made when first needed).

        @return: a L{Deferred} firing with a L{list} of
            L{twisted_mail.mail.model.FolderInfo}, or failing with
            L{InvalidUserId}, L{NoSuchUser} or L{TemporaryFailure}.
        """

    def createFolder(userid, name):
        """
        Make a folder, durably (levels above it need not exist).

        @return: a L{Deferred} firing with its canonical name, or failing
            with L{InvalidFolderName}, L{FolderExists}, L{NoSuchUser} or
            L{TemporaryFailure}.
        """

    def renameFolder(userid, name, newName):
        """
        Rename a folder and the folders below it, durably; its messages keep
        their ids and UIDs (its UIDVALIDITY stands).

        @return: a L{Deferred} firing with the new canonical name, or
            failing with L{NoSuchFolder}, L{FolderExists},
            L{InvalidFolderName}, L{FolderNotChangeable} (INBOX, a
            special-use folder) or L{TemporaryFailure}.
        """

    def deleteFolder(userid, name):
        """
        Delete a folder and its messages for good, durably (folders below
        it stay).

        @return: a L{Deferred} firing with L{None}, or failing with
            L{NoSuchFolder}, L{FolderNotChangeable} (INBOX) or
            L{TemporaryFailure}.
        """

    def openFolder(userid, name):
        """
        Open a view of one folder (C{openMailbox(userid)} is
        C{openFolder(userid, "INBOX")} with a cursor).

        @return: a L{Deferred} firing with an L{IFolder}, or failing with
            L{InvalidUserId}, L{NoSuchUser}, L{InvalidFolderName} or
            L{NoSuchFolder}.
        """

    def appendMessage(userid, folder, message, flags=(), arrived=None):
        """
        Store a complete message as given into a folder (IMAP APPEND, a sent
        copy), with flags and an arrival time, durably.

        @param message: RFC 5322 L{bytes} (line ends are normalised).
        @param flags: flags and keywords to give it.
        @param arrived: POSIX seconds, or L{None} for now.
        @return: a L{Deferred} firing with its
            L{twisted_mail.mail.mime.MessageSummary} (id, UID, flags,
            folder) once it is stored for good, or failing with
            L{NoSuchFolder}, L{InvalidFlag}, L{MessageTooLarge} or
            L{TemporaryFailure} (nothing stored).
        """

    def watch(userid, listener):
        """
        Be told of every change to the user's mail: new messages, flag
        changes and expunges in any folder, and folder changes; through any
        door and any process sharing the store, within 2 seconds.

        @param listener: called on the reactor thread with one
            L{twisted_mail.mail.model.MailEvent} per change.  It must not
            raise.
        @return: a no-argument callable that ends the watch.
        """

    def search(userid, query, folder=None, start=0, limit=None):
        """
        The messages matching a search, newest first.

        @param query: a parsed query (L{twisted_mail.mail.query}).
        @param folder: search this folder only; L{None}: every folder.
        @return: a L{Deferred} firing with a
            L{twisted_mail.mail.mime.Listing} (C{total} counts the matches;
            each summary names its folder), or failing with
            L{NoSuchFolder} or L{TemporaryFailure}.
        """


class IFolder(Interface):
    """
    A view of one folder of one user: its messages with their ids, UIDs and
    flags, in folder order (ascending UIDs).  Several views of one folder,
    in any process, see each other's changes (L{IMailStore.watch} says when).
    """

    userid = Attribute("The canonical user id whose folder this is.")

    folder = Attribute("The canonical folder name.")

    uidValidity = Attribute("The folder's UIDVALIDITY.")

    def listMessages(start=0, limit=None, newestFirst=False):
        """
        Summaries of the messages not expunged, in folder order (or the
        reverse), as the folder is now; each carries its C{uid}, C{flags}
        and C{folder}.

        @param start: how many to skip (from the newest with C{newestFirst}).
        @param limit: how many at most (L{None}: all).
        @return: a L{Deferred} firing with a L{twisted_mail.mail.mime.Listing}
            (C{total} and C{messages}, a list of
            L{twisted_mail.mail.mime.MessageSummary}), or failing with
            L{TemporaryFailure}.
        """

    def listEntries():
        """
        A light listing of every message not expunged, in folder order: what
        an IMAP C{SELECT} needs (sequence map, C{EXISTS}, C{UNSEEN},
        C{UIDNEXT}, C{RFC822.SIZE}, C{INTERNALDATE}) without reading the
        messages' headers, so its cost is the folder's scan, not a parse.

        @return: a L{Deferred} firing with a L{list} of
            L{twisted_mail.mail.mime.MessageSummary} whose C{id}, C{size},
            C{arrived}, C{uid}, C{flags} and C{folder} are those
            L{listMessages} gives; the header fields (C{sender}, C{to},
            C{subject}, C{date}, C{snippet}, C{attachments}) may be left
            empty (C{date}: the arrival time), so a door must not show
            them; or failing with L{TemporaryFailure}.
        """

    def fetchMessage(msgid):
        """
        The message with id C{msgid} as C{READM} shows it (no status or id
        lines); the cursor and the current message do not change, and no
        flag changes.

        @return: a L{Deferred} firing with L{bytes}, or failing with
            L{NoSuchMessage} or L{TemporaryFailure}.
        """

    def fetchMessages(msgids):
        """
        Many messages at once, each as L{fetchMessage} gives it, in one store
        job (the spool reads them in file order under one lock): for IMAP
        C{FETCH} and POP3, which ask for a batch ahead of what they send.
        The caller bounds the batch (a few dozen messages or a MiB).

        @return: a L{Deferred} firing with a L{list} in the order of
            C{msgids}: L{bytes} for each message, L{None} for one that is
            not there (expunged, or never was); or failing with
            L{TemporaryFailure}.
        """

    def setFlags(msgids, add=(), remove=()):
        """
        Add and remove flags of messages, durably before the answer
        (IMAP STORE, the API's PATCH, the console's Flag).  Ids of messages
        already gone are skipped.

        @return: a L{Deferred} firing with the L{list} of the changed
            messages' summaries as they are now, or failing with
            L{InvalidFlag}, L{TooManyKeywords} or L{TemporaryFailure}
            (nothing changed).
        """

    def markSeen(msgids):
        """
        Give these messages C{\\Seen} because they were read (READM, RETR,
        FETCH BODY[]): every door sees it at once; it may reach the disk
        lazily (within seconds, and by the view's C{close}).

        @return: a L{Deferred} firing with L{None}; it does not fail.
        """

    def moveMessages(msgids, folder):
        """
        Move messages to another folder of the same user, durably; each keeps
        its id and flags and gets a new UID there.

        @return: a L{Deferred} firing with a L{list} of C{(msgid, uid)} in
            the target, in the order given (ids already gone skipped), or
            failing with L{NoSuchFolder} (nothing moved) or
            L{TemporaryFailure}.
        """

    def copyMessages(msgids, folder):
        """
        Copy messages to a folder of the same user, durably; each copy gets a
        new id and UID and the original's flags.

        @return: a L{Deferred} firing with a L{list} of C{(newid, uid)}, as
            for L{moveMessages}.
        """

    def deleteMessages(msgids):
        """
        Delete the messages with these ids, durably, all in one step (POP3's
        QUIT, the web API's DELETE, IMAP EXPUNGE of C{\\Deleted}).  Ids of
        messages already gone are skipped.

        @return: a L{Deferred} firing with the L{list} of ids deleted now
            once every delete is durable, or failing with L{TemporaryFailure}
            (nothing deleted).
        """

    def close():
        """
        End the view.  Deletes made in it are expunged from the store, and
        lazy C{\\Seen} flags written, no later than this.  Calling it again
        does nothing.

        @return: a L{Deferred} firing with L{None}; it does not fail.
        """

    def summary(msgid):
        """
        The summary of the one message with id C{msgid}, as it is now (what
        L{listMessages} gives for it: its C{uid}, C{flags} and C{folder}
        included), at a cost that does not grow with the folder.

        @return: a L{Deferred} firing with a
            L{twisted_mail.mail.mime.MessageSummary}, or failing with
            L{NoSuchMessage} (none, or expunged) or L{TemporaryFailure}.
        """

    def flagsOf(msgid):
        """
        The flags of the one message with id C{msgid}, as they are now,
        without reading or parsing its text (what a door needs beside a
        text it parses itself: the web API's message view).

        @return: a L{Deferred} firing with a L{frozenset} of flags, or
            failing with L{NoSuchMessage} or L{TemporaryFailure}.
        """


class IMailboxSession(IFolder):
    """
    One client's view of INBOX with a cursor and a current message (the
    line protocol, POP3, the console).

    The cursor follows messages, not positions: messages delivered or
    deleted by anyone else never make it skip or repeat a message.
    """

    userid = Attribute("The canonical user id whose mailbox this is.")

    count = Attribute(
        "The number of messages in the mailbox when the session began."
    )

    currentId = Attribute(
        "The id of the current message (read last by readMessage or "
        "selectMessage), or None: what a door marks \\Seen after READM."
    )

    def readMessage():
        """
        Read the message at the cursor and move the cursor past it; it
        becomes the current message.

        @return: a L{Deferred} firing with the message as RFC 5322 L{bytes}
            (LF line endings), or failing with L{NoMoreMail} (the current
            message stays what it was) or L{TemporaryFailure}.
        """

    def deleteMessage():
        """
        Delete the current message.

        @return: a L{Deferred} firing with L{None} once the delete is durable,
            or failing with L{NoCurrentMessage} (nothing read yet, or it is
            already deleted) or L{TemporaryFailure}.
        """

    def selectMessage(msgid):
        """
        Like C{readMessage}, but of the message with id C{msgid}: it becomes
        the current message and the cursor moves to just after it.

        @return: a L{Deferred} firing with L{bytes}, or failing with
            L{NoSuchMessage} or L{TemporaryFailure}.
        """
