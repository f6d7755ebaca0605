"""Pre-flight: is the target there at all? (control plane, httpx)

Any HTTP answer, even a 404, proves the target is reachable; a refused
connection, a DNS failure, a TLS failure or a timeout does not, and the run
stops before it starts (exit 3) rather than measuring a wall of errors.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import httpx

from loadkit.engine.client import ssl_context
from loadkit.errors import TargetUnreachable
from loadkit.workload.models import Client


def check_target(base_url: str, client: Client, path: str = "/") -> int:
    """Return the HTTP status of GET base_url+path, or raise TargetUnreachable."""
    verify = ssl_context(client)
    shown = without_credentials(base_url)
    timeout = httpx.Timeout(client.timeouts.first_byte, connect=client.timeouts.connect)
    try:
        with httpx.Client(verify=verify, timeout=timeout, follow_redirects=False) as c:
            return c.get(base_url + path).status_code
    except httpx.ConnectError as exc:
        raise TargetUnreachable(f"cannot connect to {shown}: {exc}. Is the server "
                                "running, and is the URL right?") from None
    except httpx.TimeoutException:
        raise TargetUnreachable(f"{shown} did not answer within "
                                f"{client.timeouts.first_byte:g} s") from None
    except httpx.HTTPError as exc:
        raise TargetUnreachable(f"{shown}: {type(exc).__name__}") from None


def without_credentials(url: str) -> str:
    """The URL as it may be shown or saved: no `user:password@`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
