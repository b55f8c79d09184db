"""One "instance" of the app for the cross-process pacing test: its own threads, each with its own table client."""

from __future__ import annotations

import threading
import time

from renewal.shells.journal import table_client_from_environ
from renewal.shells.pacing import PacingOptions, TablePacer


def reserve_from_one_instance(
    connection_string: str, table_name: str, key: str, *, threads: int, each: int, options: PacingOptions
) -> tuple[list[float], int]:
    """Reserve ``each`` slots from each of ``threads`` threads at once; the slots granted, and write conflicts."""
    slots: list[float] = []
    conflicts = 0
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def caller() -> None:
        nonlocal conflicts
        table = table_client_from_environ({"RENEWAL_JOURNAL_CONNECTION": connection_string}, table_name)
        pacer = TablePacer(table, clock=time.time, options=options)
        mine = []
        start.wait()
        for _ in range(each):
            reservation = pacer.reserve(key, within=3600.0)
            while not reservation.granted:
                reservation = pacer.reserve(key, within=3600.0)
            assert reservation.at is not None
            mine.append(reservation.at)
        with lock:
            slots.extend(mine)
            conflicts += pacer.conflicts

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return slots, conflicts
