"""A second Django app whose `tasks` module no service's `imports:` lists: its
workers find it only through MPQUEUE_AUTODISCOVER."""
