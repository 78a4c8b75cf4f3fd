"""Login back-off per address, on a fake clock."""
from mpqueue.web.throttle import FREE, MAX_DELAY, Throttle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_few_failures_are_free_then_each_one_doubles_the_wait():
    clock = Clock()
    t = Throttle(clock)
    for n in range(1, FREE):
        assert t.failed("10.0.0.7") == (n, 0.0) and t.wait("10.0.0.7") == (0.0, False)
    assert t.failed("10.0.0.7") == (FREE, 1.0)
    assert t.wait("10.0.0.7") == (1.0, True)          # the first refusal is worth a log line
    assert t.wait("10.0.0.7") == (1.0, False)         # the next ones are not
    assert t.wait("10.0.0.8") == (0.0, False)         # another address is not held back
    clock.now += 1.0
    assert t.wait("10.0.0.7") == (0.0, False)
    assert t.failed("10.0.0.7") == (FREE + 1, 2.0)
    clock.now += 2.0
    assert t.failed("10.0.0.7") == (FREE + 2, 4.0)


def test_the_wait_stops_growing_at_a_minute_and_a_right_token_clears_it():
    clock = Clock()
    t = Throttle(clock)
    for _ in range(FREE + 20):
        t.failed("::1")
    assert t.wait("::1")[0] == MAX_DELAY
    t.succeeded("::1")
    assert t.wait("::1") == (0.0, False) and t.failed("::1") == (1, 0.0)


def test_a_quiet_address_starts_afresh():
    clock = Clock()
    t = Throttle(clock)
    for _ in range(FREE + 2):
        t.failed("10.0.0.7")
    clock.now += 3600
    assert t.wait("10.0.0.7") == (0.0, False) and t.failed("10.0.0.7") == (1, 0.0)
