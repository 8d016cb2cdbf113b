"""Stage timings and the process's fixed costs (JVM launch, Spark session, Delta log reads)."""

from __future__ import annotations

import threading

from visearch.core.timing import CostMeter, StageTimer


def test_cost_meter__nested_measures_of_one_name_count_once() -> None:
    meter = CostMeter()
    with meter.measure("delta_log"), meter.measure("delta_log"):
        pass
    with meter.measure("delta_log"):
        pass
    meter.add("jvm_launch", 2.5)
    report = meter.report()
    assert report["delta_log_n"] == 2, "the inner measure is part of the outer one"
    assert report["jvm_launch"] == 2.5 and report["jvm_launch_n"] == 1
    assert set(report) == {"delta_log", "delta_log_n", "jvm_launch", "jvm_launch_n"}


def test_cost_meter__threads_measure_on_their_own() -> None:
    meter = CostMeter()
    inside = threading.Event()
    release = threading.Event()

    def other() -> None:
        with meter.measure("delta_log"):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    with meter.measure("delta_log"):  # not nested in the other thread's measure
        pass
    release.set()
    thread.join()
    assert meter.counts["delta_log"] == 2


def test_cost_meter__reset_and_exceptions_still_counted() -> None:
    meter = CostMeter()
    try:
        with meter.measure("spark_session"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert meter.counts == {"spark_session": 1}
    meter.reset()
    assert meter.report() == {}


def test_stage_timer__adds_repeated_stages() -> None:
    timer = StageTimer("job")
    with timer.stage("a"):
        pass
    with timer.stage("a"):
        pass
    assert list(timer.seconds) == ["a"] and timer.seconds["a"] >= 0
    assert timer.summary().startswith("[job] stages: a=")
