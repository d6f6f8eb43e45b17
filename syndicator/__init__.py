"""syndicator: feeds and an email digest from a folder of plain-text articles."""

__version__ = "0.1.0"
