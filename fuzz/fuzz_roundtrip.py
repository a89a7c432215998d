"""
A round trip through the one builder and the one reader: a message built
by L{twisted_mail.mail.message.buildMessageWithSubject} (what the web API's
send and the console's C{SENDM} store) and read by
L{twisted_mail.mail.mime.parseMessage} keeps its text and its subject.

The input: the subject, a NUL, the text (both UTF-8, invalid bytes
replaced).  Properties:

  - the text read back is the text sent, its line ends as LF (CRLF and a
    bare CR are line ends) and a last line ending added;
  - the subject read back is the subject sent, its control characters as
    spaces and its white space collapsed (the form a summary shows);
  - the sender and receiver are the server's, the message has no parts.
"""

import re

from fuzz import harness

with harness.instrumented():
    from twisted_mail.mail import message, mime

_SPACES = re.compile(r"\s+")
_CONTROLS = re.compile("[\x00-\x1f\x7f]")


def expectedText(text):
    data = text.replace("\r\n", "\n").replace("\r", "\n")
    if data and not data.endswith("\n"):
        data += "\n"
    return data


def expectedSubject(subject):
    return _SPACES.sub(" ", _CONTROLS.sub(" ", subject)).strip()


def check(data):
    subject, _, text = data.partition(b"\0")
    subject = subject.decode("utf-8", "replace")
    text = text.decode("utf-8", "replace")
    built = message.buildMessageWithSubject(
        "bob", "carol", subject, text, "example.org", when=1785000000,
        messageId="<fuzz@example.org>")
    parsed = mime.parseMessage(built)
    assert parsed.text == expectedText(text), (text, parsed.text)
    assert parsed.subject == expectedSubject(subject), (subject, parsed.subject)
    assert parsed.sender == "bob@example.org", parsed.sender
    assert parsed.to == "carol@example.org", parsed.to
    assert parsed.parts == [] and parsed.html is None, parsed.parts
    assert parsed.problems == [], parsed.problems


if __name__ == "__main__":
    harness.main(check)
