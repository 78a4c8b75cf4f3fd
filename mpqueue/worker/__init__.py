"""The worker process: boot (import task code, run start hooks), then serve
jobs from one source until told to stop or recycled. The supervisor imports
this package only inside a forked child (supervisor/handles.py)."""
