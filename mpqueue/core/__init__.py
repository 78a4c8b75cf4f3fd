"""The pure core: what a job is and the rules every process applies to it.

Nothing in this package imports anything of mpqueue outside it, opens a socket
or forks: the job envelope (its one parser), the task table, the retry policy,
the failure kinds, the job context, the configuration and the naming rules.
Everything else (brokers, producer, worker, supervisor, ops) builds on it.
"""
