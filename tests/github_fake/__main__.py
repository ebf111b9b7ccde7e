"""``python -m tests.github_fake``: run the fake GitHub until killed.

Prints the base URL on the first line of stdout (so a parent process can
read it), serves until SIGINT/SIGTERM, then prints ``app.report()`` as JSON
on stderr: violations, request counts, concurrency, budget problems. While
it runs, ``GET <url>/_fake/report`` answers the same report.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from .app import GitHubApp
from .routes import Token
from .server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.github_fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--repo", action="append", help="owner/name (repeatable)")
    parser.add_argument("--token", action="append", help="accepted token (repeatable)")
    parser.add_argument("--read-only-token", action="append", default=[])
    parser.add_argument("--prefix", default="", help="serve under a path, e.g. /api/v3")
    parser.add_argument("--rate-limit", type=int, default=5000, help="primary limit per hour")
    parser.add_argument("--search-lag", type=float, default=60.0, help="seconds search lags writes")
    args = parser.parse_args(argv)

    tokens: list[str | Token] = [*(args.token or ["test-token"])]
    tokens += [Token(t, read_only=True) for t in args.read_only_token]
    app = GitHubApp(
        repos=args.repo or ["octo-org/octo-repo"],
        tokens=tokens,
        prefix=args.prefix,
        rate_limit=args.rate_limit,
        search_lag=args.search_lag,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with serve(app, host=args.host, port=args.port) as url:
        print(url, flush=True)
        while not stop.wait(0.2):
            pass
    print(json.dumps(app.report(), indent=2), file=sys.stderr)
    return 1 if app.violations else 0


if __name__ == "__main__":
    sys.exit(main())
