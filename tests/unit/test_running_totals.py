"""shared.running_totals: the counts behind the relay's observable counters."""

from __future__ import annotations

import threading

from shared.running_totals import RunningTotals

OK = (("app", "contoso"), ("outcome", "ok"))
BLOCKED = (("app", "contoso"), ("outcome", "blocked"))


def test_each_report_gives_the_totals_since_the_start_of_the_sets_that_moved_since_the_last() -> None:
    totals = RunningTotals()
    totals.add(OK, 2)
    totals.add(BLOCKED, 1)
    totals.add(OK, 3)
    assert sorted(totals.take_moved(), key=repr) == [(1, {"app": "contoso", "outcome": "blocked"}), (5, {"app": "contoso", "outcome": "ok"})]
    assert totals.take_moved() == []
    totals.add(OK, 1)
    assert totals.take_moved() == [(6, {"app": "contoso", "outcome": "ok"})]


def test_counts_added_from_many_threads_while_reports_are_taken_are_all_reported_once() -> None:
    totals = RunningTotals()

    def count() -> None:
        for _ in range(5000):
            totals.add(OK, 1)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    last = 0
    while any(thread.is_alive() for thread in threads):
        for total, _ in totals.take_moved():
            assert total >= last
            last = total
    for thread in threads:
        thread.join()
    last = max([last, *(total for total, _ in totals.take_moved())])
    assert last == 20_000
