"""What a request to GitHub answers, shared by the client and its endpoints.

Its own module so that the arrow between ``client.py`` (which makes these)
and ``rest.py`` (which reads them) goes one way: ``client`` imports
``rest``, and both import this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GitHubResponse", "Params"]

#: A query string, as httpx takes it.
Params = Mapping[str, str | int]


@dataclass(frozen=True, slots=True)
class GitHubResponse:
    """An accepted answer: a 2xx, a 304 answered from the ETag cache, or a dry run.

    ``json`` is the decoded body (None for 204); ``from_cache`` marks a 304
    answered with the cached page (``status`` is the cached one, 200);
    ``dry_run`` marks a write that was printed instead of sent.
    """

    status: int
    json: Any
    headers: Mapping[str, str]
    etag: str | None = None
    from_cache: bool = False
    dry_run: bool = False
