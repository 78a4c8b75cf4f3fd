"""The scoreboard: a record per worker, a slot per job it may run at once; the
supervisor reads it while the worker writes, on the same monotonic clock."""
from mpqueue import ipc


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_each_slot_is_read_back_on_its_own():
    clock = Clock()
    board = ipc.Scoreboard(1000, clock)
    assert board.read().busy == 0 and board.read().deadline() == float("inf")
    board.start("a", "ta", 30.0, slot=0)
    clock.now += 1
    board.start("b", "tb", 5.0, slot=999)          # the last slot of the largest board
    read = board.read()
    assert [(s.index, s.job_id, s.token) for s in read.running] == [(0, "a", "ta"), (999, "b", "tb")]
    assert read.deadline() == 106.0                # the earliest of the running jobs
    board.finish(True, slot=0)
    board.finish(False, slot=999)
    read = board.read()
    assert (read.busy, read.done, read.failed) == (0, 1, 1)


def test_an_overdue_slot_is_due_now_and_keeps_its_job():
    clock = Clock()
    board = ipc.Scoreboard(4, clock)
    board.start("a", "ta", 60.0, slot=2)
    clock.now += 3
    board.overdue(2, "a", "ta", 100.0)
    slot, = board.read().running
    assert (slot.job_id, slot.deadline()) == ("a", 103.0)


def test_a_refusal_counts_as_failed_without_taking_a_slot():
    board = ipc.Scoreboard(2, Clock())
    board.count_failed()
    read = board.read()
    assert (read.busy, read.failed) == (0, 1)


def test_the_board_is_shared_with_a_forked_child():
    import os
    board = ipc.Scoreboard(8)
    pid = os.fork()
    if pid == 0:
        board.start("child", "t", 9.0, slot=5)
        os._exit(0)
    os.waitpid(pid, 0)
    slot, = board.read().running
    assert (slot.index, slot.job_id) == (5, "child")
