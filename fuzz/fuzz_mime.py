"""
The one reader (L{twisted_mail.mail.mime}): C{parseMessage} and
C{summarize} on any bytes.

Properties:
  - nothing raises;
  - a summary's fields (sender, to, subject, date, snippet) and every
    header's name are printable one-line text (no control character),
    every header's value is on one line (no CR or LF), the date is ISO 8601 UTC or empty, the snippet at most
    L{SNIPPET_LENGTH} characters, the size the POP3 size;
  - at most L{MAX_PARTS} parts, numbered 1, 2, ... in order, each with a
    one-line file name that names no other place (no C{/} or C{\\}, no
    leading dot), a one-line content type, and its size that of its
    content; the summary counts them;
  - each problem noted is one line.
"""

import re

from fuzz import harness

with harness.instrumented():
    from twisted_mail.mail import mime

_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


def checkText(value, what):
    assert isinstance(value, str), (what, value)
    assert harness.isOneLineText(value), (what, value)


def check(text):
    summary = mime.summarize(text, "m1", 1785000000)
    for field in ("sender", "to", "subject", "snippet"):
        checkText(getattr(summary, field), field)
    assert _ISO.match(summary.date), summary.date
    assert len(summary.snippet) <= mime.SNIPPET_LENGTH, summary.snippet
    assert summary.size == mime.popSize(text)
    parsed = mime.parseMessage(text)
    for name, value in parsed.headers:
        # A reader shows a value's controls escaped; it is on one line.
        checkText(name, "header name")
        assert "\r" not in value and "\n" not in value, (name, value)
    assert len(parsed.parts) <= mime.MAX_PARTS
    assert summary.attachments == len(parsed.parts)
    for number, part in enumerate(parsed.parts, 1):
        assert part.part == number, (part.part, number)
        checkText(part.filename, "filename")
        assert part.filename and "/" not in part.filename and "\\" not in part.filename
        assert not part.filename.startswith("."), part.filename
        checkText(part.contentType, "content type")
        assert part.size == len(part.content()), part
    for problem in parsed.problems:
        checkText(problem, "problem")
    assert isinstance(parsed.text, str)
    assert parsed.html is None or isinstance(parsed.html, str)


if __name__ == "__main__":
    harness.main(check)
