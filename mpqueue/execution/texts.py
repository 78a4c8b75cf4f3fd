"""A job's outcome in words a record can hold: the done record whatever the
result is, an exception's text whatever its __str__ does, valid UTF-8 always
(an outcome that can't be encoded must still be recorded)."""
from __future__ import annotations

import traceback

from ..core import envelope as jobmod


def result_record(fields: dict) -> str:
    """The done record as JSON; a result that is not JSON (or not valid UTF-8)
    is kept as its repr(), so recording a success can never fail."""
    try:
        record = jobmod.dumps(fields)
        if not record.isascii():
            record.encode("utf-8")        # raises for a lone surrogate
        return record
    except (TypeError, ValueError, RecursionError):
        fields = {**fields, "result": safe_repr(fields["result"])}
        return jobmod.dumps(fields)


def safe_repr(value, limit: int = 1000) -> str:
    try:
        text = repr(value)
    except Exception as exc:      # noqa: BLE001 - a result's __repr__ may raise anything
        text = f"<{type(value).__name__} whose repr() raised {type(exc).__name__}>"
    return clean_text(text[:limit])


def describe(exc: BaseException, with_type: bool = True) -> str:
    """'Type: message' of an exception, even when its __str__ raises or holds lone surrogates."""
    try:
        text = str(exc)
    except Exception as inner:    # noqa: BLE001
        text = f"<str() raised {type(inner).__name__}>"
    return clean_text(f"{type(exc).__name__}: {text}" if with_type else text)


def clean_text(text: str) -> str:
    """`text` as valid UTF-8 (lone surrogates escaped): records must encode."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def format_traceback() -> str:
    try:
        return traceback.format_exc()
    except Exception:             # noqa: BLE001 - formatting calls the exception's __str__
        return "(the traceback could not be formatted)"
