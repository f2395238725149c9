"""Is the Hub there? One request with a short timeout, so the GUI can say so at once instead of after the retries."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0  # a Hub that has not answered in 3 s is as good as unreachable for a person waiting


def hub_unreachable(*, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the Hub (HF_ENDPOINT, through the same session, proxy and certificates) answers at all;
    otherwise why it cannot be reached, in words. Blocking for at most about `timeout_s`: call it from a job."""
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE)"
    host = constants.ENDPOINT.split("://", 1)[-1].split("/", 1)[0]
    try:
        # Any HTTP answer, even an error status, means the Hub is there; only no answer is "unreachable".
        get_session().head(f"{constants.ENDPOINT}/api/models", timeout=timeout_s)
    except Exception as error:  # noqa: BLE001 - whatever the transport raises, the answer is "not reachable"
        kind = type(error).__name__
        reason = {"ConnectError": "the connection was refused or the name is unknown",
                  "ConnectTimeout": f"no answer within {timeout_s:g} s", "ReadTimeout": f"no answer within {timeout_s:g} s",
                  "ProxyError": "the proxy refused the connection"}.get(kind, f"{kind}: {error}")
        log.info("Hub %s unreachable: %r", host, error)
        return f"{host}: {reason}"
    return None
