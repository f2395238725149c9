"""Is the Hub there at all: one request with a short timeout, so the CLI and the GUI say so at once, in one message."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import constants
from huggingface_hub.utils import get_session

from models.errors import HubError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0  # a Hub that has not answered in 3 s is as good as unreachable for a person waiting
_REMEMBER_OK_S = 60.0  # a Hub that answered a minute ago is not asked again before each call
_ok_at: dict[str, float] = {}
_ok_lock = threading.Lock()


class HubUnreachable(HubError):
    """The Hub (or the mirror in HF_ENDPOINT) did not answer at all; nothing was asked of it."""


def hub_unreachable(*, endpoint: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the Hub answers at all (any HTTP status, through huggingface_hub's session, proxy and
    certificates); otherwise why it cannot be reached, in words. Blocks for about `timeout_s` at most, so a GUI
    calls it off its event thread, and can call it again on a timer to notice when the Hub is back."""
    if constants.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE)"
    base = (endpoint or constants.ENDPOINT).rstrip("/")
    host = urlsplit(base).netloc or base
    try:
        # The site root, not an API route: it costs the Hub nothing and any answer, even 404, proves it is there.
        get_session().head(base + "/", timeout=httpx2.Timeout(timeout_s), follow_redirects=False)
    except httpx2.TimeoutException:
        reason = f"no answer within {timeout_s:g} s"
    except httpx2.ProxyError as error:
        reason = f"the proxy refused the connection ({error})"
    except httpx2.ConnectError as error:
        reason = f"the connection failed: {error}"
    except httpx2.HTTPError as error:
        reason = f"{type(error).__name__}: {error}"
    else:
        with _ok_lock:
            _ok_at[base] = time.monotonic()
        return None
    with _ok_lock:
        _ok_at.pop(base, None)
    log.info("Hub %s unreachable: %s", host, reason)
    return f"{host}: {reason}"


def require_hub(what: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise HubUnreachable, with one sentence, when the Hub does not answer; instead of huggingface_hub's five
    retries (23 s, each logged) before the same conclusion. A Hub that answered within the last minute is not
    asked again."""
    if constants.HF_HUB_OFFLINE:
        raise HubUnreachable(f"{what}: offline mode is on (HF_HUB_OFFLINE); the Hub was not asked.")
    base = constants.ENDPOINT.rstrip("/")
    with _ok_lock:
        fresh = time.monotonic() - _ok_at.get(base, -_REMEMBER_OK_S) < _REMEMBER_OK_S
    if fresh:
        return
    reason = hub_unreachable(endpoint=base, timeout_s=timeout_s)
    if reason is not None:
        raise HubUnreachable(f"{what}: the Hub cannot be reached ({reason}). Check the network or proxy, "
                             "or HF_ENDPOINT if you use a mirror.")
