"""The traffic format: parsing, errors naming line, field, rule and value, and the arm catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bandit_router.config import load_config
from bandit_router.traffic.convert import from_llmrouter, from_routeprofile
from bandit_router.traffic.format import (
    Outcome,
    Record,
    TrafficError,
    arm_catalog,
    parse_record,
    read_traffic,
    timestamps_of,
    write_traffic,
)

DATA = Path(__file__).resolve().parents[1] / "data"
GOOD = {"id": "q1", "query": "What is 2+2?", "task": "math", "outcomes": {"a": {"quality": 1, "output_tokens": 3}}}


def with_(**changes: object) -> str:
    return json.dumps({**GOOD, **changes})


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{nope", r"f:3: not a JSON object"),
        ("[1]", r"f:3: must be a JSON object, got list"),
        (with_(query=" "), r"f:3: query must be a non-empty string, got ' '"),
        (with_(id=7), r"f:3: id must be a non-empty string, got 7"),
        (with_(outcomes={}), r"f:3: outcomes must be a non-empty object"),
        (with_(outcomes={"a": {"cost_usd": 1}}), r"f:3: outcomes\['a'\] must be an object with a quality"),
        (with_(outcomes={"a": {"quality": 1.5}}), r"f:3: outcomes\['a'\]: quality must be in \[0, 1\], got 1.5"),
        (with_(outcomes={"a": {"quality": 1, "output_tokens": 2.5}}), r"output_tokens must be a int, got 2.5"),
        (with_(outcomes={"a": {"quality": 1, "energy_joules": -1}}), r"energy_joules must be in \[0, inf\], got -1"),
        (with_(outcomes={"a": {"quality": 1, "tokens": 5}}), r"outcomes\['a'\] has unknown fields \['tokens'\]"),
        (with_(timestamp="noon"), r"f:3: timestamp must be a float, got 'noon'"),
        (with_(timestamp=-1), r"f:3: timestamp must be in \[0, inf\], got -1"),
    ],
)
def test_bad_lines_are_named(line: str, match: str) -> None:
    with pytest.raises(TrafficError, match=match):
        parse_record(line, "f:3")


def test_round_trip(tmp_path: Path) -> None:
    record = parse_record(json.dumps(GOOD), "f:1")
    assert record.outcomes["a"] == Outcome(quality=1.0, output_tokens=3)
    write_traffic([record, record], tmp_path / "t.jsonl")
    assert read_traffic(tmp_path / "t.jsonl") == [record, record]
    assert read_traffic(tmp_path / "t.jsonl", limit=1) == [record]


def test_timestamps_are_kept_and_used_only_where_every_record_has_one_in_order(tmp_path: Path) -> None:
    stamped = [parse_record(with_(id=f"q{i}", timestamp=1_700_000_000 + t), "f:1") for i, t in enumerate([0, 2.5, 2.5])]
    write_traffic(stamped, tmp_path / "t.jsonl")
    assert read_traffic(tmp_path / "t.jsonl") == stamped
    assert timestamps_of(stamped) == [1_700_000_000.0, 1_700_000_002.5, 1_700_000_002.5]
    assert timestamps_of([*stamped, parse_record(with_(), "f:2")]) is None
    assert timestamps_of(stamped[::-1]) is None


def test_arm_catalog_takes_serving_then_reference_profiles() -> None:
    serving = load_config(env={}).models
    records = [Record("1", "q", "", {"gemma-2-9b-it": Outcome(1.0), "codegemma-7b": Outcome(0.0)})]
    catalog = {m.id: m for m in arm_catalog(records, serving)}
    assert catalog["gemma-2-9b-it"] == next(m for m in serving if m.id == "gemma-2-9b-it")
    assert catalog["codegemma-7b"].parameters_b == 7.0 and "dense fit" in catalog["codegemma-7b"].energy_profile_source
    with pytest.raises(
        TrafficError,
        match=r"model 'mystery-1b' is in neither the catalog nor the reference .* "
        r"record '2' has no cost_usd for it",
    ):
        arm_catalog(
            [
                Record("1", "q", "", {"mystery-1b": Outcome(1.0, cost_usd=0.001)}),
                Record("2", "q", "", {"mystery-1b": Outcome(1.0)}),
            ],
            serving,
        )
    uneven = [records[0], Record("2", "q", "", {"gemma-2-9b-it": Outcome(1.0)})]
    with pytest.raises(TrafficError, match=r"record '2' has outcomes for \['gemma-2-9b-it'\], the first record for"):
        arm_catalog(uneven, serving)


def test_converters_read_the_public_datasets() -> None:
    """On small vendored extracts of each published format (tests/data/README.md says which rows)."""
    llmrouter = list(from_llmrouter(DATA / "llmrouter", "test"))
    # Tasks joined on the exact query text; the fourth query has no task line; a cut line is skipped.
    assert [r.task for r in llmrouter] == ["agentverse-logicgrid", "agentverse-mgsm", "commongen", ""]
    assert [r.id for r in llmrouter] == [f"llmrouter-test-{i}" for i in range(4)]
    assert all(len(r.outcomes) == 9 and all(o.cost_usd is None for o in r.outcomes.values()) for r in llmrouter)
    assert llmrouter[0].query.startswith("Q: There are 3 houses in a row")
    assert llmrouter[2].outcomes["llama-3.1-8b-instruct"].quality == pytest.approx(0.8518518519)
    assert llmrouter[3].outcomes["gemma-2-9b-it"].quality == 1.0
    routeprofile = list(from_routeprofile(DATA / "routeprofile"))
    assert [r.task for r in routeprofile] == ["agentverse-logicgrid", "agentverse-mgsm", "commongen"]
    assert all(len(r.outcomes) == 8 for r in routeprofile)
    # 299 prompt and 447 completion tokens at 0.88 USD per million each.
    outcome = routeprofile[0].outcomes["llama-3.3-70b-instruct"]
    assert (outcome.input_tokens, outcome.output_tokens, outcome.quality) == (299, 447, 1.0)
    assert outcome.cost_usd == pytest.approx((299 + 447) * 0.88 / 1e6)
    assert routeprofile[2].outcomes["llama-3.3-70b-instruct"].quality == pytest.approx(0.9629629629629629)


def test_the_bundled_sample_is_valid_traffic() -> None:
    from importlib import resources

    with resources.as_file(resources.files("bandit_router.data").joinpath("sample_traffic.jsonl")) as path:
        records = read_traffic(path)
    assert len(records) == 300 and len({r.task for r in records}) == 12
    assert arm_catalog(records, load_config(env={}).models)


def test_a_model_in_no_catalog_is_priced_from_what_the_traffic_carries() -> None:
    serving = load_config(env={}).models
    records = [
        Record("1", "q", "", {"my-ft": Outcome(1.0, cost_usd=0.003, input_tokens=100, output_tokens=200)}),
        Record("2", "q", "", {"my-ft": Outcome(0.5, cost_usd=0.001, input_tokens=50, output_tokens=50)}),
    ]
    (spec,) = arm_catalog(records, serving)
    # 0.004 USD over 400 tokens: 10 USD per 1M tokens, in and out; the mean answer 125 tokens.
    assert spec.input_usd_per_mtok == pytest.approx(10.0) and spec.output_usd_per_mtok == pytest.approx(10.0)
    assert spec.typical_output_tokens == pytest.approx(125.0)
    # No energy in the traffic and no profile: unknown, not invented.
    assert not spec.energy_known and spec.energy_profile_source.startswith("unknown")
    with_energy = [
        Record(
            "1",
            "q",
            "",
            {"my-ft": Outcome(1.0, cost_usd=0.003, input_tokens=100, output_tokens=100, energy_joules=20.0)},
        )
    ]
    (measured,) = arm_catalog(with_energy, serving)
    assert measured.energy_j_per_output_token == pytest.approx(0.1) and measured.energy_known
    # Costs without tokens: the price is left at 0 and the router learns the mean cost from the rewards.
    (untokened,) = arm_catalog([Record("1", "q", "", {"my-ft": Outcome(1.0, cost_usd=0.002)})], serving)
    assert untokened.input_usd_per_mtok == 0.0
