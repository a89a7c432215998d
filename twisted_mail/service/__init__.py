"""
The service: options, the doors table, listeners, workers, migration, admin commands.
"""
