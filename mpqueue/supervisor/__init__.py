"""The supervisor process: the loop (loop.py) and its roles, one module each.
Imports the worker package only inside a forked child."""
from .loop import Supervisor

__all__ = ["Supervisor"]
