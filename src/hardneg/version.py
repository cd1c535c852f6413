"""hardneg's version: part of every mining fingerprint."""

__version__ = "0.1.0"
