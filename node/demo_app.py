"""A small CLI that fails on purpose, used by ``errmesh demo`` and the tests.

It integrates errmesh the way a real program would: ``node.install()`` at
start, ordinary ``logging``, an unhandled exception. Its messages carry
variable parts (ids, paths) so that grouping is visible, and one log line
carries a token taken from the environment so that scrubbing is visible.
"""

from __future__ import annotations

import logging
import os
import random
import sys

import node

log = logging.getLogger("demo_app")


def parse_record(raw: str) -> int:
    return int(raw)


def load_batch(batch_id: int) -> list[int]:
    log.info("loading batch %d from /var/lib/demo/batch-%d.csv", batch_id, batch_id)
    return [parse_record(f"x{batch_id}")]


def fetch(url: str) -> bytes:
    try:
        raise OSError(111, "Connection refused")
    except OSError as exc:
        raise ConnectionError(f"cannot reach {url}") from exc


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log.info("demo_app starting with token %s", os.environ.get("DEMO_API_TOKEN", "(none)"))
    mode = argv[0] if argv else "parse"
    if mode == "parse":
        load_batch(random.randint(1, 10_000))
    elif mode == "network":
        fetch(f"http://10.0.{random.randint(0, 255)}.{random.randint(1, 254)}:8080/api")
    elif mode == "exit":
        sys.exit(int(argv[1]) if len(argv) > 1 else 3)
    return 0


if __name__ == "__main__":
    node.install(app="demo_app", app_version="1.0")
    sys.exit(main(sys.argv[1:]))
