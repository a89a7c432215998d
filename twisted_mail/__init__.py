"""
simplemail: a small multi-user mail server on Twisted and its terminal client.
"""

__version__ = "0.1.0"
