"""
Sample messages for search tests: the forms a search must read (RFC 2047
headers, quoted-printable and base64 bodies, HTML-only mail, attachments),
shared by the query tests and the store contract mixin
(L{tests.searchcontract}).
"""

#: Plain ASCII mail.
PLAIN = (
    b"From: Alice Example <alice@example.com>\n"
    b"To: Bob <bob@example.com>\n"
    b"Cc: Carol <carol@example.com>\n"
    b"Subject: Meeting agenda for Tuesday\n"
    b"Date: Thu, 03 Dec 2026 23:30:00 -0500\n"
    b"\n"
    b"Hello Bob,\n\nThe quarterly review meeting is near the lake.\n"
    b"Bring the e-mail from 10:30.\n"
)

#: An RFC 2047 subject and sender, a quoted-printable Latin-1 body.
ENCODED = (
    b"From: =?utf-8?q?Ren=C3=A9e_Fran=C3=A7ois?= <renee@example.fr>\n"
    b"To: bob@example.com\n"
    b"Subject: =?iso-8859-1?q?Caf=E9_cr=E8me_au_d=E9jeuner?=\n"
    b"Date: Fri, 04 Dec 2026 09:00:00 +0000\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=iso-8859-1\n"
    b"Content-Transfer-Encoding: quoted-printable\n"
    b"\n"
    b"Nous irons au caf=E9 pr=E8s de la gare =E0 midi.\n"
    b"L'=C9t=E9 sera chaud.\n"
)

#: HTML only, base64.
HTML_ONLY = (
    b"From: Newsletter <news@shop.example>\n"
    b"To: bob@example.com\n"
    b"Subject: Weekly deals\n"
    b"Date: Sat, 05 Dec 2026 12:00:00 +0000\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/html; charset=utf-8\n"
    b"Content-Transfer-Encoding: base64\n"
    b"\n"
    + __import__("base64").encodebytes(
        b"<html><head><style>.hidden{color:red}</style></head><body>"
        b"<p>Huge <b>discounts</b> on bicycles&nbsp;today</p></body></html>")
)

#: A text part and a PDF attachment with an encoded file name.
ATTACHMENT = (
    b"From: Dave <dave@example.org>\n"
    b"To: bob@example.com\n"
    b"Subject: the invoice\n"
    b"Date: Sun, 06 Dec 2026 08:00:00 +0000\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="BOUND"\n'
    b"\n"
    b"--BOUND\n"
    b"Content-Type: text/plain; charset=us-ascii\n"
    b"\n"
    b"Please find it attached.\n"
    b"--BOUND\n"
    b"Content-Type: application/pdf\n"
    b"Content-Disposition: attachment; filename=\"=?utf-8?q?Rechnung_M=C3=A4rz.pdf?=\"\n"
    b"Content-Transfer-Encoding: base64\n"
    b"\n"
    b"JVBERi0xLjQK\n"
    b"--BOUND--\n"
)

#: All four, in delivery order.
SAMPLES = [PLAIN, ENCODED, HTML_ONLY, ATTACHMENT]
