"""The data format rule (mpqueue/brokers/data_format.py): which records a process
accepts, and the one line it refuses the others with."""
import pytest

from mpqueue.brokers import BrokerError, DataFormatError
from mpqueue.brokers.data_format import CURRENT, accept


@pytest.mark.parametrize("recorded", [None, "", 0])
def test_no_record_means_format_1_as_v0_1_0_wrote_it(recorded):
    assert accept(recorded) == 1


@pytest.mark.parametrize("recorded", [1, "1", b"1"])
def test_the_current_format_is_accepted_as_any_backend_returns_it(recorded):
    assert CURRENT == 1
    assert accept(recorded) == 1


def test_a_newer_format_is_refused_in_one_line_naming_both():
    with pytest.raises(DataFormatError) as refused:
        accept(str(CURRENT + 1))
    assert str(refused.value) == (f"broker data format {CURRENT + 1} is newer than this mpqueue understands "
                                  f"({CURRENT}): upgrade mpqueue on this host")
    assert isinstance(refused.value, BrokerError)     # every caller's `except BrokerError` sees it


@pytest.mark.parametrize("recorded", ["two", "1.5", -3])
def test_a_record_mpqueue_never_wrote_is_refused(recorded):
    with pytest.raises(DataFormatError, match="^broker data format") as refused:
        accept(recorded)
    assert "\n" not in str(refused.value)
