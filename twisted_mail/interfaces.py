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
        @return: a L{Deferred} firing with L{None} only once the message is
            stored for good (on disk and synced, for a disk store).  It fails
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


class IMailboxSession(Interface):
    """
    One client's view of one mailbox: a cursor and a current message.

    The cursor follows messages, not positions: messages delivered or
    deleted by anyone else never make it skip or repeat a message.
    """

    userid = Attribute("The canonical user id whose mailbox this is.")

    count = Attribute(
        "The number of messages in the mailbox when the session began."
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

    # -- the mailbox view, shared by every door (POP3, the web API, LSTM).
    # Messages are named by stable ids: opaque URL-safe ASCII
    # ([A-Za-z0-9_-]{1,64}), unique in the mailbox, unchanged across
    # sessions, restarts, other sessions' deletes and other tools'
    # rewrites, never given to another message (docs/mailbox-ids.rst).

    def listMessages(start=0, limit=None, newestFirst=False):
        """
        Summaries of the messages not deleted, in mailbox order (or the
        reverse), as the mailbox is now.

        @param start: how many to skip (from the newest with C{newestFirst}).
        @param limit: how many at most (L{None}: all).
        @return: a L{Deferred} firing with a L{twisted_mail.mail.mime.Listing}
            (C{total} and C{messages}, a list of
            L{twisted_mail.mail.mime.MessageSummary}), or failing with
            L{TemporaryFailure}.
        """

    def fetchMessage(msgid):
        """
        The message with id C{msgid} as C{readMessage} gives it; the cursor
        and the current message do not change.

        @return: a L{Deferred} firing with L{bytes}, or failing with
            L{NoSuchMessage} or L{TemporaryFailure}.
        """

    def selectMessage(msgid):
        """
        Like C{readMessage}, but of the message with id C{msgid}: it becomes
        the current message and the cursor moves to just after it.

        @return: a L{Deferred} firing with L{bytes}, or failing with
            L{NoSuchMessage} or L{TemporaryFailure}.
        """

    def deleteMessages(msgids):
        """
        Delete the messages with these ids, durably, all in one step (POP3's
        QUIT, the web API's DELETE).  Ids of messages already gone are
        skipped.

        @return: a L{Deferred} firing with the L{list} of ids deleted now
            once every delete is durable, or failing with L{TemporaryFailure}
            (nothing deleted).
        """

    def close():
        """
        End the session.  Deletes made in it are expunged from the store no
        later than this.  Calling it again does nothing.

        @return: a L{Deferred} firing with L{None}; it does not fail.
        """
