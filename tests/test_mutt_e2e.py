"""
Debian's mutt and the spool agree on flags (issue 19): mutt marks messages
read and flagged and the store shows it; the store flags a message and mutt
acts on it.  mutt runs in a pseudo-terminal (script(1)) on the real spool
file, with commands pushed by C{-e}.  Under C{CI=1} a missing mutt fails
the tests rather than skipping them.
"""

import os
import shutil
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.mail.model import FLAGGED, SEEN
from twisted_mail.stores.spool.folders import Folders

from .programs import missing, programEnvironment
from .test_store import makeSpoolStore

MUTT = shutil.which("mutt")
SCRIPT = shutil.which("script")

MUTTRC = """\
set mbox_type=mbox
set folder={home}
set spoolfile={home}/unused
set record=""
set postponed={home}/postponed
set move=no
set mark_old=yes
set confirmappend=no
set quit=yes
set delete=yes
set sort=mailbox-order
set mail_check=0
set wait_key=no
set header_cache=""
"""


class MuttTests(SynchronousTestCase):
    def setUp(self):
        if MUTT is None or SCRIPT is None:
            missing("mutt (and script)", "apt-get install mutt bsdutils")
        self.path = self.mktemp()
        self.store = makeSpoolStore(self, self.path)
        self.ok(self.store.addUser("bob"))
        self.inbox = os.path.abspath(os.path.join(self.path, "bob"))
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)
        self.muttrc = os.path.join(self.home, "muttrc")
        with open(self.muttrc, "w") as f:
            f.write(MUTTRC.format(home=self.home))

    def ok(self, d):
        return self.successResultOf(d)

    def mutt(self, keys, mailbox=None):
        """
        Run mutt on bob's INBOX file (or C{mailbox}), push C{keys}, and wait
        for it to end.
        """
        command = "stty rows 40 cols 120; {} -n -F {} -f {} -e {}".format(
            MUTT, self.muttrc, mailbox or self.inbox, _quote("push " + keys))
        env = programEnvironment(TERM="xterm", HOME=self.home, MAIL=self.inbox)
        done = subprocess.run([SCRIPT, "-qec", command, "/dev/null"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=120)
        self.assertEqual(done.returncode, 0, done.stdout[-2000:])

    def listed(self):
        store = makeSpoolStore(self, self.path)
        view = self.ok(store.openMailbox("bob"))
        return self.ok(view.listMessages()).messages

    def test_muttFlagsShowInStore(self):
        """
        A message mutt flags and one it reads show as \\Flagged and \\Seen
        through the store, with their ids and UIDs unchanged.
        """
        for body in [b"first\n", b"second\n"]:
            self.ok(self.store.deliver("alice", "bob", body))
        before = self.listed()
        self.mutt("<flag-message><next-entry><display-message>q<sync-mailbox>q")
        after = self.listed()
        self.assertEqual([(m.id, m.uid) for m in after], [(m.id, m.uid) for m in before])
        self.assertIn(FLAGGED, after[0].flags)
        self.assertNotIn(SEEN, after[0].flags)
        self.assertIn(SEEN, after[1].flags)
        # And a flag change through the store still works on mutt's file.
        view = self.ok(makeSpoolStore(self, self.path).openMailbox("bob"))
        self.ok(view.setFlags([after[0].id], add=[SEEN], remove=[FLAGGED]))
        self.assertEqual(self.listed()[0].flags, frozenset([SEEN]))

    def test_storeFlagsShowInMutt(self):
        """
        mutt acts on the flags the store wrote: told to delete the flagged
        messages, it deletes exactly the one the store flagged, and the
        other keeps its id.
        """
        for body in [b"keep\n", b"flagged\n", b"keep too\n"]:
            self.ok(self.store.deliver("alice", "bob", body))
        ids = [m.id for m in self.listed()]
        view = self.ok(self.store.openMailbox("bob"))
        self.ok(view.setFlags([ids[1]], add=[FLAGGED, SEEN]))
        self.mutt("<delete-pattern>~F<enter><sync-mailbox>q")
        after = self.listed()
        self.assertEqual([m.id for m in after], [ids[0], ids[2]])
        self.ok(view.close())


    def test_muttCopyIsANewMessage(self):
        """
        A message mutt copies from a folder into INBOX (with the store's id and X-UID lines in it) is a new message there: an id of its own, the next UID, and the original keeps its id in its folder.
        """
        self.ok(self.store.createFolder("bob", "Work"))
        for body in [b"work one\n", b"work two\n"]:
            self.ok(self.store.appendMessage("bob", "Work", b"Subject: w\n\n" + body, []))
        for body in [b"first\n", b"second\n", b"third\n"]:
            self.ok(self.store.deliver("alice", "bob", body))
        folders = Folders(self.store._dirfd, "bob")
        self.addCleanup(folders.close)
        work = os.path.join(os.path.abspath(self.path), ".bob.folders",
                            folders.scan()["Work"][0])
        before = self.listed()
        workView = self.ok(self.store.openFolder("bob", "Work"))
        workIds = [m.id for m in self.ok(workView.listMessages()).messages]
        self.mutt("<copy-message>{}<enter>q".format(self.inbox), mailbox=work)
        after = self.listed()
        self.assertEqual([(m.id, m.uid) for m in after[:3]],
                         [(m.id, m.uid) for m in before])
        self.assertEqual(len(after), 4)
        self.assertNotIn(after[3].id, workIds + [m.id for m in before])
        self.assertEqual(after[3].uid, 4)
        store = makeSpoolStore(self, self.path)
        view = self.ok(store.openFolder("bob", "Work"))
        self.assertEqual([m.id for m in self.ok(view.listMessages()).messages], workIds)


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"
