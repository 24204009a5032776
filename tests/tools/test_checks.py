"""The verdicts without a kernel: what observe.py records, and how checks.py judges it.

Each attack here is one the old grader lost to (an answer whose `==` agrees with anything, a
message that "contains" any text, a forged report): the student's side of the comparison is
made to lie, and the check must still fail.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from grader import checks, observe
from grader.model import Report


def recorded(**values) -> Report:
    """A report as a kernel would send it, from observe() calls."""
    observe._records.clear()
    for key, (value, judge) in values.items():
        observe.observe(key, value, **judge)
    return checks.parse_report(json.dumps({"observations": dict(observe._records),
                                           "error": None}))


class Yes(list):
    def __eq__(self, other):
        return True

    __hash__ = None


class AnyText(str):
    def __contains__(self, other):
        return True

    def __eq__(self, other):
        return True

    __hash__ = None


def test_plain_data_is_judged_by_exact_type():
    assert observe.plain([True, (1, 2.5), {"a": None}]) == [True, [1, 2.5], {"a": None}]
    assert observe.plain(np.arange(4).reshape(2, 2)) == [[0, 1], [2, 3]]
    assert observe.plain(np.float32(0.5)) == 0.5
    assert observe.plain(float("nan")) == {"float": "nan"}
    for liar in (Yes([1]), AnyText("x"), object()):
        assert "not plain" in observe.plain(liar), liar
    assert observe.plain([1, Yes()])[1] == {"not plain": f"{__name__}.Yes"}


def test_an_observation_too_large_is_not_plain():
    observe._records.clear()
    observe.observe("big", list(range(observe.MAX_ITEMS + 1)))
    assert observe._records["big"]["value"] == {"not plain": "too large"}


def test_values_that_agree_with_anything_fail():
    reference = recorded(prediction=([True, False], {}), message=("expected 3, got 4",
                                                                  {"contains": True}))
    honest = recorded(prediction=([True, False], {}),
                      message=("ValueError: expected 3, got 4", {}))
    liar = recorded(prediction=(Yes([False, False]), {}), message=(AnyText("no"), {}))
    assert checks.judge(reference, honest) == (True, [])
    assert checks.judge(reference, liar) == (False, ["prediction", "message"])


def test_the_reference_decides_the_judge_not_the_student():
    reference = recorded(x=([1.0, 2.0], {"close": 1e-3}))
    # a student who claims `agree` for its own values gets the reference's judge anyway
    student = recorded(x=([[5.0], [5.0]], {"agree": True}))
    assert checks.judge(reference, student)[0] is False
    assert checks.judge(reference, recorded(x=([1.0005, 2.0], {})))[0] is True


def test_bools_are_not_numbers_and_numbers_keep_their_tolerance():
    reference = recorded(flags=([True, False], {}), n=(83, {}))
    assert not checks.judge(reference, recorded(flags=([1, 0], {}), n=(83, {})))[0]
    assert not checks.judge(reference, recorded(flags=([True, False], {}), n=(84, {})))[0]


def test_a_message_holding_every_answer_is_no_answer():
    reference = recorded(m=("expected 17 features, got 9", {"contains": True}))
    every = ", ".join(f"expected {a} features, got {b}" for a in range(3, 40)
                      for b in range(3, 40))
    assert not checks.judge(reference, recorded(m=(every, {})))[0]


def test_agree_compares_the_students_own_values():
    reference = recorded(order=([[1.0, 2.0], [1.0, 2.0]], {"agree": True, "close": 1e-5}))
    assert checks.judge(reference, recorded(order=([[7.0, 3.0], [7.0, 3.0]], {})))[0]
    assert not checks.judge(reference, recorded(order=([[7.0, 3.0], [3.0, 7.0]], {})))[0]
    assert not checks.judge(reference, recorded(order=([[7.0, 3.0]], {})))[0]


def test_missing_observations_and_errors_fail_and_say_where():
    reference = recorded(a=(1, {}), b=(2, {}))
    stopped = Report(recorded(a=(1, {})).observations, "ValueError")
    assert checks.judge(reference, stopped) == (
        False, ["the checks stopped with an error before: b"])
    finished_with_error = replace(recorded(a=(1, {}), b=(2, {})), error="ValueError")
    assert checks.judge(reference, finished_with_error) == (
        False, ["the checks stopped with an error"])


@pytest.mark.parametrize("text", [None, 3, "", "not json", "[]", '{"observations": []}',
                                  '{"observations": {"a": 1}}', "[" * 100_000])
def test_malformed_reports_observe_nothing(text):
    report = checks.parse_report(text)
    assert report.observations == {}
    assert not checks.judge(recorded(a=(1, {})), report)[0]


def test_a_reference_that_cannot_judge_is_a_course_problem():
    assert checks.reference_problem(recorded(a=(1, {}))) is None
    assert "raised" in checks.reference_problem(Report({}, "NameError"))
    assert "nothing" in checks.reference_problem(Report({}, None))
    assert "not plain" in checks.reference_problem(recorded(a=(object(), {})))


def test_message_reads_an_exception_by_type_only():
    def raises(text):
        raise ValueError(text)

    assert observe.outcome(raises, "expected 3") == {"raised": "builtins.ValueError",
                                                      "message": "expected 3"}
    assert observe.outcome(raises, AnyText("x"))["message"] is None
    assert observe.outcome(len, []) == {"raised": None}


def test_check_source_is_the_hidden_region():
    cell = "assert x\n### BEGIN HIDDEN TESTS\nobserve('x', x)\n### END HIDDEN TESTS\n"
    assert checks.check_source(cell) == "observe('x', x)\n"
    assert checks.check_source("assert x\n") is None


def test_split_regions_keeps_the_visible_and_the_hidden_lines_apart():
    cell = ("assert x\n### BEGIN HIDDEN TESTS\nobserve('x', x)\n### END HIDDEN TESTS\n"
            "print('ok')\n    ### BEGIN HIDDEN TESTS\nobserve('y', y)\n### END HIDDEN TESTS\n")
    assert checks.split_regions(cell) == (["assert x", "print('ok')"],
                                          ["observe('x', x)", "observe('y', y)"])
    assert checks.split_regions("x = 1  # ### BEGIN HIDDEN TESTS\n") == (
        ["x = 1  # ### BEGIN HIDDEN TESTS"], None)
