"""multiprocessing: a worker started with the ``fork`` or ``forkserver`` method ends with ``os._exit()``
— no ``atexit`` runs, so the rows it queued in a batching sink (and its open sessions) would be lost.

multiprocessing runs its "after fork" hooks in every such worker, and its exit-priority finalizers
just before ``os._exit``: this module registers a finalizer in each worker that finishes pending
calls and flushes the sink.  (``spawn`` workers exit normally and flush through ``atexit``.)
"""

from __future__ import annotations

from .. import capture

NAME = "multiprocessing"
TARGET = "multiprocessing.util"


class _Anchor:  # register_after_fork keeps a weak reference to an object: this one lives forever
    pass


_anchor = _Anchor()
_state = {"registered": False}


def _flush() -> None:
    if not capture.runtime.active:
        return
    from .subprocess import _flush_before_exec

    _flush_before_exec()


def _in_worker(_anchor_obj) -> None:
    try:
        import multiprocessing.util as util

        util.Finalize(None, _flush, exitpriority=-100)  # the last finalizer before os._exit
    except Exception:
        capture.counters["errors.mp_flush"] += 1


def install(patches) -> None:
    import multiprocessing.util as util

    if not _state["registered"]:
        util.register_after_fork(_anchor, _in_worker)
        _state["registered"] = True
    from . import socket as socket_channel

    socket_channel.share_multiprocessing_reducers()  # sockets that got a row before multiprocessing came
