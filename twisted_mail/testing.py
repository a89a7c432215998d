"""
Helpers for tests of code built on simplemail: an in-memory L{IMailStore}
(L{MemoryStore}, from L{twisted_mail.stores.memory}) with the same contract
as the spool and PostgreSQL stores.
"""

from twisted_mail.stores.memory import MemoryStore

__all__ = ["MemoryStore"]
