"""Producers: everything a process needs to push jobs (Client, the @task
decorator's push, connect() and the one process-wide default client), and inline
execution for `sync://`. Needs only a broker, never a running service."""
