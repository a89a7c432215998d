"""
Realistic mail for the search benchmarks, made deterministically from a
seed: a few hundred correspondents, English-like text from a vocabulary of
a few thousand words (Zipf-distributed, as words in mail are), replies with
quoted text, some HTML-only and multipart/alternative mail, attachments,
RFC 2047 headers with accents, quoted-printable bodies; 1-8 KB of text, an
attachment of 5-40 KB in one message of ten.

    python benchmarks/mailgen.py --messages 400 --out bob.mbox
"""

import argparse
import base64
import email.header
import email.utils
import itertools
import random
import time

_SYLLABLES = ("ba be bi bo bu da de di do ka ke ki ko la le li lo ma me mi mo mu "
              "na ne ni no ra re ri ro sa se si so ta te ti to va ve vi vo "
              "str pl tr gr ch sh th qu").split()

_COMMON = ("the of and to a in is it you that he was for on are with as i his they "
           "be at one have this from or had by hot word but what some we can out "
           "other were all there when up use your how said an each she which do "
           "their time if will way about many then them write would like so these "
           "her long make thing see him two has look more day could go come did "
           "number sound no most people my over know water than call first who may "
           "down side been now find meeting agenda review budget project report "
           "deadline invoice release server deploy customer contract schedule "
           "lunch friday monday tuesday quarterly update draft proposal").split()

_ACCENTED = ("café crème déjeuner été garçon naïve résumé Zürich Müller "
             "Ångström señor Øresund façade").split()


class MailGenerator:
    """
    Messages of one mailbox, made from C{seed}.
    """

    def __init__(self, seed=1):
        self.random = random.Random(seed)
        r = self.random
        made = set()
        while len(made) < 3000:
            made.add("".join(r.choice(_SYLLABLES) for _ in range(r.randint(2, 4))))
        self.vocabulary = _COMMON + sorted(made) + _ACCENTED
        # Zipf-like weights: the n-th word about 1/n as common.
        weights = [1.0 / (n + 1) for n in range(len(self.vocabulary))]
        self.cumulative = list(itertools.accumulate(weights))
        self.people = []
        for _ in range(300):
            first = r.choice(self.vocabulary[len(_COMMON):]).capitalize()
            last = r.choice(self.vocabulary[len(_COMMON):]).capitalize()
            domain = r.choice(["example.com", "example.org", "mail.example.net",
                               "corp.example"])
            self.people.append((first + " " + last,
                                "{}.{}@{}".format(first, last, domain).lower()))

    def words(self, n):
        return self.random.choices(self.vocabulary, cum_weights=self.cumulative, k=n)

    def sentence(self):
        words = self.words(self.random.randint(5, 16))
        return " ".join(words).capitalize() + self.random.choice([".", ".", ".", "?", "!"])

    def paragraph(self):
        return " ".join(self.sentence() for _ in range(self.random.randint(2, 6)))

    def text(self):
        target = int(self.random.lognormvariate(7.6, 0.6))  # ~2 KB median
        out = []
        size = 0
        while size < min(max(target, 300), 8000):
            p = self.paragraph()
            out.append(p)
            size += len(p)
        return "\n\n".join(out)

    def header(self, value):
        if all(ord(c) < 128 for c in value):
            return value
        return email.header.Header(value, "utf-8").encode()

    def message(self, when):
        """
        One message (bytes, LF line ends) dated C{when}.
        """
        r = self.random
        name, address = r.choice(self.people)
        toName, toAddress = r.choice(self.people)
        subject = " ".join(self.words(r.randint(2, 7))).capitalize()
        if r.random() < 0.3:
            subject = "Re: " + subject
        if r.random() < 0.08:
            subject += " " + r.choice(_ACCENTED)
        body = self.text()
        if r.random() < 0.08:
            body += "\n\n" + " ".join(r.choice(_ACCENTED) for _ in range(3))
        headers = [
            ("From", "{} <{}>".format(self.header(name), address)),
            ("To", "{} <{}>".format(toName, toAddress)),
            ("Subject", self.header(subject)),
            ("Date", email.utils.formatdate(when)),
            ("Message-ID", "<{}.{}@example.com>".format(int(when), r.randrange(10 ** 9))),
            ("MIME-Version", "1.0"),
        ]
        if r.random() < 0.2:
            headers.insert(2, ("Cc", "{} <{}>".format(*r.choice(self.people))))
        kind = r.random()
        if kind < 0.1:
            boundary = "b{}".format(r.randrange(10 ** 12))
            filename = "{}.pdf".format(r.choice(self.vocabulary[len(_COMMON):]))
            blob = base64.encodebytes(r.randbytes(r.randint(5000, 40000))).decode()
            content = (
                'Content-Type: multipart/mixed; boundary="{b}"\n\n'
                "--{b}\nContent-Type: text/plain; charset=utf-8\n"
                "Content-Transfer-Encoding: 8bit\n\n{body}\n"
                "--{b}\nContent-Type: application/pdf\n"
                'Content-Disposition: attachment; filename="{f}"\n'
                "Content-Transfer-Encoding: base64\n\n{blob}"
                "--{b}--\n").format(b=boundary, body=body, f=filename, blob=blob)
        elif kind < 0.2:
            html = "".join("<p>{}</p>\n".format(p) for p in body.split("\n\n"))
            content = ("Content-Type: text/html; charset=utf-8\n"
                       "Content-Transfer-Encoding: 8bit\n\n"
                       "<html><body>\n{}</body></html>\n".format(html))
        elif kind < 0.3:
            import quopri
            qp = quopri.encodestring(body.encode("utf-8")).decode("ascii")
            content = ("Content-Type: text/plain; charset=utf-8\n"
                       "Content-Transfer-Encoding: quoted-printable\n\n" + qp + "\n")
        else:
            content = ("Content-Type: text/plain; charset=utf-8\n"
                       "Content-Transfer-Encoding: 8bit\n\n" + body + "\n")
        head = "".join("{}: {}\n".format(k, v) for k, v in headers)
        return (head + content).encode("utf-8")

    def messages(self, count, start=None, spacing=600):
        """
        C{count} messages, C{spacing} seconds apart, the last about now.
        """
        if start is None:
            start = int(time.time()) - count * spacing
        for i in range(count):
            yield start + i * spacing, self.message(start + i * spacing)


def mboxRecord(sender, when, text, msgid=None):
    """
    An mboxrd record of C{text}, as the spool stores it.
    """
    from twisted_mail.mail.message import idHeaderLine, mboxRecordChunks, separatorLine

    idLine = idHeaderLine(msgid) if msgid else b""
    return b"".join(mboxRecordChunks(separatorLine(sender, when), idLine, text))


def writeMbox(path, count, seed=1):
    """
    Write a spool file of C{count} generated messages at C{path}.
    """
    import secrets

    gen = MailGenerator(seed)
    with open(path, "wb") as f:
        for when, text in gen.messages(count):
            f.write(mboxRecord(b"x@example.com", when, text, secrets.token_urlsafe(12)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    writeMbox(args.out, args.messages, args.seed)
