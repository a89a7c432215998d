"""
The mbox spool store: the store, its mbox file, records, locks and crash recovery.
"""
