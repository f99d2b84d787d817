"""When reasonkit talks to the Hugging Face Hub: only to read a model or dataset named by hub id.

The hub libraries (huggingface_hub, transformers, datasets, peft, TRL) call the hub on their own too:
TRL pings telemetry when a trainer starts, huggingface_hub fetches an agent registry, and without a
network each call is retried five times with back-off before it fails. So the command line starts
them in offline mode (``keep_offline``), and the first time something names a hub id, one request
per process decides (``access``):

- ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE`` / ``HF_DATASETS_OFFLINE``) set by the user: hub ids
  are read from the local cache only, no request at all;
- the hub answers: the libraries go online for the rest of the process and download as usual;
- it does not: they stay offline and read hub ids from the local cache.

A hub id the cache does not hold then fails at once with ``HubUnreachable``, which names the id and
the two fixes, instead of retrying. Loads go through ``reading(name, what)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from reasonkit.errors import ReasonkitError

log = logging.getLogger(__name__)

PROBE_SECONDS = 5.0  # one request per process; a firewall that drops packets costs this once
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
# `org/name` or `name`, as the hub spells repositories; a name ending like a data file is a path.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_FILE_SUFFIXES = {".jsonl", ".json", ".parquet", ".csv", ".arrow", ".txt", ".yaml", ".yml", ".safetensors"}
_LOCAL_FORM = {
    "model": "a directory saved with save_pretrained",
    "tokenizer": "a directory saved with save_pretrained",
}


class HubUnreachable(ReasonkitError):
    """A hub id the hub cannot serve now and the local cache does not hold."""


@dataclass(frozen=True)
class Access:
    reachable: bool
    why_not: str = ""  # when not reachable: the user's setting, or the failed request
    probed: bool = False  # decided by a request (not by the user's HF_HUB_OFFLINE)


_access: Access | None = None
_user_offline: bool | None = None  # as the user's environment said, before keep_offline changed it
_told_cache = False  # whether the console was told that hub ids come from the cache


def keep_offline() -> None:
    """Put the hub libraries in offline mode until a hub id is needed (the command line does this
    first, so that a run whose models and data are all local makes no hub call at all)."""
    global _user_offline
    if _user_offline is None:
        _user_offline = _offline_in_environment()
    _set_offline(True)


def access() -> Access:
    """Whether this process may download from the hub; decided once, by at most one request."""
    global _access
    if _access is None:
        user_offline = _user_offline if _user_offline is not None else _offline_in_environment()
        if user_offline:
            _access = Access(False, "the hub is not asked (HF_HUB_OFFLINE is set)")
        else:
            error = _probe()
            _access = Access(
                error is None, f"the hub ({_endpoint()}) cannot be reached ({error})", probed=True
            )
        _set_offline(not _access.reachable)
    return _access


def is_hub_id(name: str) -> bool:
    """Whether the libraries would look ``name`` up on the hub: not a local path, shaped like a repo id."""
    return (
        not Path(name).exists()
        and _REPO_ID.fullmatch(name) is not None
        and Path(name).suffix.lower() not in _FILE_SUFFIXES
    )


@contextlib.contextmanager
def reading(name: str, what: str):
    """Around a library call that reads ``name`` (a local path or a hub id), ``what`` saying what it is
    ("model", "dataset", ...): a hub id decides hub access first; one that the offline libraries cannot
    find in the cache becomes ``HubUnreachable``. Library errors that are not about finding it pass."""
    global _told_cache
    if not is_hub_id(name):
        yield
        return
    state = access()
    try:
        yield
    except OSError:  # transformers' OSError, datasets' ConnectionError/FileNotFoundError, hub cache misses
        if state.reachable:
            raise
        raise HubUnreachable(unreachable_message(name, what, state.why_not)) from None
    if not state.reachable and state.probed and not _told_cache:  # who set HF_HUB_OFFLINE knows
        _told_cache = True
        log.info("%s; hub ids are read from the local cache (%s %r was there)", state.why_not, what, name)


def where_is_model(name: str) -> str:
    """Where a model would be read from, checked without loading it (the dry run's check)."""
    if Path(name).is_dir():
        return "a local directory"
    if not is_hub_id(name):
        raise ReasonkitError(f"model {name!r}: no such directory, and not shaped like a hub id (org/name)")
    state = access()
    if state.reachable:
        return "a hub id; the hub can be reached"
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return "a hub id, in the local cache"
    raise HubUnreachable(unreachable_message(name, "model", state.why_not))


def unreachable_message(name: str, what: str, why_not: str) -> str:
    from huggingface_hub import constants

    local = _LOCAL_FORM.get(what, "a .jsonl/.json/.parquet/.csv file")
    return (
        f"{what} {name!r} is a Hugging Face Hub id, {why_not}, and it is not in the local cache "
        f"({constants.HF_HOME}). Either give a local path instead ({local}), or download it once where "
        f"the hub can be reached into the cache this machine reads (HF_HOME) and run with HF_HUB_OFFLINE=1."
    )


def _probe() -> str | None:
    """None when the hub answers one HEAD request (any status), else why it did not. Through
    huggingface_hub's own session, so proxies and certificates are those the downloads would use."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    # The session refuses every request in offline mode, this one included.
    offline, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, False
    try:
        get_session().head(_endpoint(), timeout=PROBE_SECONDS)
        return None
    except Exception as exc:  # any failure to get an answer means the same thing here
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        constants.HF_HUB_OFFLINE = offline


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _offline_in_environment() -> bool:
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in OFFLINE_VARIABLES)


def _set_offline(offline: bool) -> None:
    """Tell every hub library, and the processes this one starts. huggingface_hub and datasets read the
    variable once, when imported; transformers, peft and TRL ask huggingface_hub."""
    os.environ["HF_HUB_OFFLINE"] = "1" if offline else "0"
    if (hub_constants := sys.modules.get("huggingface_hub.constants")) is not None:
        hub_constants.HF_HUB_OFFLINE = offline
    if (datasets_config := sys.modules.get("datasets.config")) is not None:
        datasets_config.HF_HUB_OFFLINE = datasets_config.HF_DATASETS_OFFLINE = offline
