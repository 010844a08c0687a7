"""The garbage collector's policy in the long-running service processes (docs/decisions/0331).

Python's cyclic collector runs a young-generation pass every 700 net allocations and, every so often, a full
pass over every tracked object in the process. A served process holds a few hundred thousand long-lived
objects from its start (Django, the apps, the URL and admin registries, compiled statements), and the fill
and signal paths allocate thousands of short-lived ones per message (parsed frames, Decimals, row tuples).
Measured in the fill ingest server, collections took about a fifth of its CPU.

``gc_policy_apply`` runs once a process has finished starting: it moves everything alive at that point into
the permanent generation (``gc.freeze``: never scanned again, still freed by reference counting) and raises
the young generation's threshold (``GC_GEN0_THRESHOLD``), so passes are fewer and cover only what the work
itself keeps. Reference counting frees nearly all of that work's garbage without the collector; only cycles
wait for a pass, and a pass still comes every ``GC_GEN0_THRESHOLD`` net allocations. ``GC_GEN0_THRESHOLD=0``
leaves the collector as Python sets it.
"""

from __future__ import annotations

import gc

import structlog
from django.conf import settings

log = structlog.get_logger("ordermanager.startup")


def gc_policy_apply(process: str) -> bool:
    """Freeze what the start left alive and raise the young threshold; False when the setting keeps Python's
    collector as it is. Safe to call again (a restarted startup sequence): the second freeze moves only what
    the first left behind."""
    threshold = settings.GC_GEN0_THRESHOLD
    if threshold <= 0:
        return False
    gc.collect()  # the start's garbage goes now, not into the permanent generation
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
    log.info("gc_policy_applied", process=process, frozen=gc.get_freeze_count(), gen0_threshold=threshold)
    return True
