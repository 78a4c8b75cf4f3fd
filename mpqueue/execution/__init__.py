"""Running one reserved job and settling its outcome: shared by worker processes
and by inline execution (sync://), and below both. The supervisor uses only
settle.py (it settles crashed, timed-out and lost jobs; it never runs one)."""
