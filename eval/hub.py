"""Reachability of the Hugging Face hub, checked before a slow fetch."""

from __future__ import annotations

import os
import socket
from typing import Optional
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 5.0


def hub_offline() -> bool:
    """Return whether HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) forbids network access."""
    values = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("HF_DATASETS_OFFLINE", ""))
    return any(value.strip().lower() in {"1", "true", "yes", "on"} for value in values)


def probe_hub_endpoint() -> Optional[str]:
    """Return why the hub endpoint cannot be reached, or None when it can.

    huggingface_hub retries an unreachable host for about 25 s before it gives
    up; one TCP connect with a short timeout finds the same in seconds.
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as error:
        return f"{endpoint} is unreachable ({error})"
