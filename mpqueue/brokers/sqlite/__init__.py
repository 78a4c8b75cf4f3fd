"""The SQLite broker: one WAL file, one transaction per state change, FIFO wake-ups."""
from .broker import SQLiteBroker
from .db import parse_url

__all__ = ["SQLiteBroker", "parse_url"]
