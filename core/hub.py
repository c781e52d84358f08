"""The Hugging Face hub as a source of models: what the cache holds, and whether the hub
answers before a download is attempted.

Light on purpose (no torch, no transformers), so that a start that cannot get its models
says so before the heavy imports.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
from huggingface_hub import constants, get_session, is_offline_mode, try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id

from core.errors import ModelLoadError

# How long the hub may take to answer before a model the cache lacks is given up: without a
# limit huggingface_hub retries each file, and a start with no route to the hub took minutes.
REACHABLE_TIMEOUT_S = 3.0


def in_hub_cache(name_or_path: str) -> bool:
    """A hub id (not a folder here) whose config is in the Hugging Face cache."""
    if Path(name_or_path).is_dir():
        return False
    try:
        return isinstance(try_to_load_from_cache(name_or_path, "config.json"), str)
    except ValueError:  # not a valid hub id either: the load will say so
        return False


def require_hub(name_or_path: str, variable: str) -> None:
    """Raise ModelLoadError at once if `name_or_path` must come from a hub that does not answer.

    Nothing is asked for a folder, a model whose config is cached, or with HF_HUB_OFFLINE set.
    Any answer, even 401 or 404, counts: the download then reports it in its own words.
    """
    if is_offline_mode() or not _is_hub_id(name_or_path) or in_hub_cache(name_or_path):
        return
    reach_hub(name_or_path, variable)


def reach_hub(name_or_path: str, variable: str) -> None:
    """One HEAD request for the model's config with a short timeout; ModelLoadError without an
    answer. Called before any download, also of what a partly cached model lacks."""
    if is_offline_mode() or not _is_hub_id(name_or_path):
        return
    url = f"{constants.ENDPOINT}/{name_or_path}/resolve/main/config.json"
    try:
        get_session().head(url, timeout=REACHABLE_TIMEOUT_S, follow_redirects=False)
    except httpx2.TransportError as error:
        raise ModelLoadError(
            f"Could not load the model {name_or_path!r} ({variable}): it is not in the Hugging "
            f"Face cache and the hub at {constants.ENDPOINT} did not answer within "
            f"{REACHABLE_TIMEOUT_S:.0f} s ({type(error).__name__}). Fix: run once with "
            f"network access so it is saved in the Hugging Face cache, or set {variable} to "
            f"a local folder made with save_pretrained()."
        ) from None


def _is_hub_id(name_or_path: str) -> bool:
    """Not a path here, and shaped like a hub id (a missing folder is left to the loader)."""
    if Path(name_or_path).exists():
        return False
    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        return False
    return True
