"""Naming and display rules used everywhere: what a queue or service may be
called, how a URL is shown without its secrets, how 'module:attr' names an
object. One home each, so the CLIs, the config and the client agree."""
from __future__ import annotations

import importlib
import re

from .redis_url import SCHEMES as REDIS_SCHEMES, split_url

# A service or queue name: safe as a file name, a Redis key part and a unit instance.
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
NAME_CHARS = "letters, digits, '_', '.' and '-'"
QUEUE_NAME_MAX = 100
# Query options whose value is a secret (redis-py takes ?password=; Sentinel adds its own).
_SECRET_OPTION = re.compile(r"(?i)((?:^|&)[^=&]*(?:password|secret|token)[^=&]*=)[^&]*")
# user:password@ inside any URL found in free text (an exception's message, say).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s/]*@")
_TEXT_OPTION = re.compile(r"(?i)([?&][^=&\s]*(?:password|secret|token)[^=&\s]*=)[^&\s'\"]*")


def is_name(value) -> bool:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def is_queue_name(value) -> bool:
    return is_name(value) and len(value) <= QUEUE_NAME_MAX


JOB_ID_MAX = 128
_JOB_ID_RE = re.compile(r"[A-Za-z0-9_.:-]+")


def is_job_id(value) -> bool:
    """What a job id may be wherever one is typed or passed in: generated ids are 16
    lowercase hex digits; the rule leaves room for ids a caller chooses."""
    return isinstance(value, str) and len(value) <= JOB_ID_MAX and _JOB_ID_RE.fullmatch(value) is not None


def job_id_rule() -> str:
    return f"a job id of letters, digits, '_', '.', ':' and '-', at most {JOB_ID_MAX}"


# Generated ids are 16 lowercase hex digits; brokers name junk they find "bad-...".
_GENERATED_ID_RE = re.compile(r"[0-9a-f]{16}")


def is_caller_job_id(value) -> bool:
    """An id a caller may choose (push(job_id=...), `mpqctl push --id`): a job id
    that can never be one mpqueue makes up (16 lowercase hex digits, or bad-...)."""
    return is_job_id(value) and _GENERATED_ID_RE.fullmatch(value) is None and not value.startswith("bad-")


def caller_job_id_rule() -> str:
    return job_id_rule() + ", not 16 lowercase hex digits (generated ids) and not starting with 'bad-'"


def queue_rule() -> str:
    return f"a queue name of {NAME_CHARS}, at most {QUEUE_NAME_MAX}"


def redact(url: str) -> str:
    """The URL with any password (user-info, or a ?password=-style option) as ***;
    everything else exactly as written."""
    if not isinstance(url, str):
        return url
    parts = split_url(url)
    if parts.query:
        query = _SECRET_OPTION.sub(r"\1***", parts.query)
        url = url.replace("?" + parts.query, "?" + query, 1)
    start, end = _userinfo_span(url, parts)
    if ":" in url[start:end]:
        url = url[:start] + url[start:end].partition(":")[0] + ":***" + url[end:]
    return url


def _userinfo_span(url: str, parts) -> tuple[int, int]:
    """Where the user-info is: from the '//' to the last '@' of the authority, or, in
    a Redis URL, to its last '@' anywhere: only a password holds one there, its
    '/', '?' or '#' having cut the authority short (a mistake to show, not the
    password)."""
    if parts.authority is None:
        return 0, 0
    start = url.find("//") + 2
    if parts.scheme in REDIS_SCHEMES and parts.scheme != "unix" and "@" in url[start:]:
        return start, url.rindex("@")
    return start, start + len(parts.userinfo or "")


def redact_text(text: str) -> str:
    """`text` with every URL password in it replaced by *** (for error messages,
    logs and STATUS=, which other users can read)."""
    if not isinstance(text, str):
        return text
    return _TEXT_OPTION.sub(r"\1***", _URL_USERINFO.sub(r"\1:***@", text))


def import_string(spec: str):
    """'package.module:attr.sub' -> the object."""
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# `sync://` is not a broker but a way of running: each pushed job runs inline in
# the pushing process (producer/inline.py). Only a producer can use it.
INLINE_SCHEME = "sync"


def is_inline(url) -> bool:
    return isinstance(url, str) and split_url(url).scheme == INLINE_SCHEME
