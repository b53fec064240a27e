"""A/B assignment, team-draft interleaving and the report's statistics."""

from __future__ import annotations

import random

from embedtune.serving.abtest import (
    CONTROL,
    TREATMENT,
    bucket,
    bucket_report,
    interleaving_outcome,
    interleaving_report,
    team_draft_interleave,
)


def test_bucketing_is_stable_and_respects_the_share() -> None:
    arms = [bucket(f"user{i}", "exp1", 0.3) for i in range(4000)]
    assert arms == [bucket(f"user{i}", "exp1", 0.3) for i in range(4000)]
    assert 0.27 < arms.count(TREATMENT) / len(arms) < 0.33
    assert bucket("u", "exp1", 0.0) == CONTROL and bucket("u", "exp1", 1.0) == TREATMENT


def test_team_draft_interleaving_takes_turns_without_duplicates() -> None:
    control, treatment = ["a", "b", "c", "d"], ["b", "e", "a", "f"]
    for seed in range(50):
        slots = team_draft_interleave(control, treatment, 6, random.Random(seed))
        docs = [s.doc_id for s in slots]
        assert len(docs) == len(set(docs)) == 6
        for slot in slots:  # every document is credited to an arm whose ranking holds it
            assert slot.doc_id in (control if slot.arm == CONTROL else treatment)
        counts = [sum(s.arm == arm for s in slots[:4]) for arm in (CONTROL, TREATMENT)]
        assert counts == [2, 2]  # fair: after two rounds each arm contributed two
    assert [s.doc_id for s in team_draft_interleave(["a"], [], 5, random.Random(0))] == ["a"]


def test_interleaving_outcome() -> None:
    slots = team_draft_interleave(["a", "b"], ["c", "d"], 4, random.Random(1))
    arm_of = {s.doc_id: s.arm for s in slots}
    assert interleaving_outcome(slots, {"c"}) == arm_of["c"]
    assert interleaving_outcome(slots, {"a", "c"}) == "tie"
    assert interleaving_outcome(slots, set()) == "tie"


def test_interleaving_report_verdicts() -> None:
    better = interleaving_report([TREATMENT] * 70 + [CONTROL] * 30 + ["tie"] * 50)
    assert better["verdict"] == "treatment better" and better["preference_share"] == 0.7
    assert better["preference_ci95"][0] > 0.5
    worse = interleaving_report([TREATMENT] * 20 + [CONTROL] * 60)
    assert worse["verdict"] == "treatment worse"
    unsure = interleaving_report([TREATMENT] * 11 + [CONTROL] * 9)
    assert unsure["verdict"] == "not yet significant" and unsure["searches_needed_estimate"] > 20


def test_bucket_report() -> None:
    control = [[3]] * 40 + [[]] * 60
    treatment = [[1]] * 60 + [[]] * 40
    report = bucket_report(control, treatment)
    assert report["verdict"] == "treatment better"
    assert report[TREATMENT]["ctr"] == 0.6 and report[CONTROL]["abandonment"] == 0.6
    assert report[CONTROL]["mrr"] == round(40 / 3 / 100, 4)
    same = bucket_report([[1], []] * 10, [[1], []] * 10)
    assert same["verdict"] == "not yet significant"
