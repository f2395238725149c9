"""What a Hub or network failure means, in one sentence for the user: one wording for listings, headers and downloads."""

from __future__ import annotations

import logging

import httpx2
from huggingface_hub import constants, get_token
from huggingface_hub import errors as hf_errors

log = logging.getLogger(__name__)

# What call sites catch and hand to hub_error_message: the client's errors, the transport's, and the parse
# errors that garbage JSON or an unexpected shape from a broken mirror or proxy raise inside the client.
HUB_FAILURES: tuple[type[Exception], ...] = (hf_errors.OfflineModeIsEnabled, hf_errors.HfHubHTTPError,
                                             httpx2.HTTPError, ValueError, KeyError, TypeError)


def hub_error_message(what: str, error: Exception, *, repo_id: str | None = None) -> str:
    """`what` (the repo, file or operation) and what went wrong, with what to do about it where there is a fix."""
    if isinstance(error, hf_errors.OfflineModeIsEnabled):
        return f"{what}: offline mode is on (HF_HUB_OFFLINE); the Hub was not asked."
    if isinstance(error, hf_errors.GatedRepoError):  # before RepositoryNotFoundError: it is a subclass
        where = f"at {constants.ENDPOINT}/{repo_id}" if repo_id else "on the Hub"
        how = ("log in with `hf auth login` so Tokenometer can use your token" if get_token() is None
               else "your token has no access yet (the request may still be pending)")
        return f"{what}: the repo is gated: accept its terms {where}, and {how}."
    if isinstance(error, hf_errors.RemoteEntryNotFoundError):
        url = error.response.url if error.response is not None else ""
        return f"{what}: no such file ({url})."
    if isinstance(error, hf_errors.RepositoryNotFoundError):
        return f"{what}: no such repo, or it is private and needs a token (`hf auth login`)."
    if isinstance(error, hf_errors.RevisionNotFoundError):
        return f"{what}: no such revision."
    if isinstance(error, hf_errors.HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        return f"{what}: the Hub answered HTTP {status}."
    if isinstance(error, httpx2.HTTPError):
        return f"{what}: cannot reach the Hub ({type(error).__name__}: {error})."
    if isinstance(error, (ValueError, KeyError, TypeError)):
        return f"{what}: the Hub sent an answer that cannot be read ({type(error).__name__})."
    return f"{what}: {type(error).__name__}: {error}"
