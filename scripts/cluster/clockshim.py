"""``python -m scripts.cluster.clockshim OFFSET -m MODULE ARGS...``: a host whose clock is off.

The relay has no clock-offset setting, so a host's wrong wall clock is
injected here, before anything of errmesh is imported: ``time.time`` and
``time.time_ns`` return the true time plus ``OFFSET`` seconds (as on a
machine whose NTP is broken), while the monotonic clocks trio and the
election's timers run on stay true. Log timestamps carry the offset too;
the history takes it back out (``history.leadership``).
"""

from __future__ import annotations

import runpy
import sys
import time


def main() -> None:
    offset = float(sys.argv[1])
    if sys.argv[2] != "-m" or len(sys.argv) < 4:
        raise SystemExit("usage: python -m scripts.cluster.clockshim OFFSET -m MODULE [ARGS...]")
    true_time, true_time_ns = time.time, time.time_ns
    time.time = lambda: true_time() + offset
    time.time_ns = lambda: true_time_ns() + int(offset * 1e9)
    module = sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
