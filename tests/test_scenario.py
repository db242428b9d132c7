"""Scenarios: shipped ones load, bad keys are named, splits are disjoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.scenario import Scenario, load_scenario, scenario_names

REQUIRED = {"paper-case-study", "paper-homogeneous", "paper-naive", "mooncake-conversation",
            "bursty-fluctuating"}


def test_shipped_scenarios_load():
    assert REQUIRED <= set(scenario_names())
    for name in scenario_names():
        if name == "mooncake-conversation":
            continue  # needs the shared trace; tested below
        sc = load_scenario(name)
        assert len(sc.workload(0, n=50)) == 50


def _write(tmp_path, data):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _base():
    return yaml.safe_load(open(load_scenario.__globals__["scenario_dir"]() / "paper-case-study.yaml"))


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.update(bogus=1), "bogus"),
    (lambda d: d["deployment"].update(n_prfaas=-1), "n_prfaas"),
    (lambda d: d["workload"]["synthetic"]["arrivals"].update(rate=-2), "rate"),
    (lambda d: d.update(policy="nope"), "policy"),
    (lambda d: d["workload"].update(requestz=5), "requestz"),
    (lambda d: d.update(bandwidth={"kind": "warp"}), "kind"),
    (lambda d: d.update(threshold_tokens="auto"), "threshold_tokens"),
    (lambda d: d.update(sim={"telemetry_interval_s": -1}), "telemetry_interval_s"),
    (lambda d: d.update(link={"capacity_gbps": 1e7}), "capacity_gbps"),
    (lambda d: d.update(randomize={"link_gbps": [10, 1e7]}), "link_gbps"),
])
def test_invalid_scenario_key_is_named(tmp_path, mutate, needle):
    d = _base()
    mutate(d)
    with pytest.raises(PrfaasInputError) as e:
        load_scenario(_write(tmp_path, d))
    assert needle in str(e.value)
    assert "s.yaml" in str(e.value)


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(PrfaasInputError, match="paper-case-study"):
        load_scenario("no-such-scenario")


def test_mooncake_train_val_and_eval_windows_are_disjoint(shared_traces, monkeypatch):
    monkeypatch.setenv("PRFAAS_TRACES", str(shared_traces))
    sc = load_scenario("mooncake-conversation")
    everything = sc.workload(0, split="all")
    assert len(everything) == 12031
    parts = [sc.split_trace(s) for s in ("train", "val", "eval")]
    # consecutive in arrival order, each request in exactly one part
    assert [r.prompt_tokens for p in parts for r in p] == [r.prompt_tokens for r in everything]
    train, val, ev = (len(p) / 12031 for p in parts)
    assert 0.5 < train < 0.65 and 0.15 < val < 0.25 and 0.15 < ev < 0.3  # val_fraction 0.2
    w = sc.workload(4, n=100, split="eval")
    assert len(w) == 100 and w.requests[0].arrival_s == 0.0


def test_synthetic_train_val_and_eval_never_share_a_sample_path():
    sc = load_scenario("bursty-fluctuating")
    prompts = {s: [r.prompt_tokens for r in sc.workload(3, n=50, split=s)]
               for s in ("train", "val", "eval")}
    assert prompts["train"] != prompts["val"] != prompts["eval"] != prompts["train"]
    assert prompts["val"] == [r.prompt_tokens for r in sc.workload(3, n=50, split="val")]


def test_generated_links_differ_per_split_and_all_is_train():
    """Held-out runs must not replay the links training saw: each split generates its own."""
    sc = load_scenario("bursty-fluctuating")
    caps = {s: [tuple(t.bytes_per_s[:50]) for t in sc.bandwidth_sampler(s).traces]
            for s in ("train", "val", "eval", "all")}
    assert caps["all"] == caps["train"]
    assert sc.bandwidth(0, "eval").name.endswith("@eval")  # reports say whose link it is
    assert "@" not in sc.bandwidth(0, "train").name
    for a, b in (("train", "val"), ("train", "eval"), ("val", "eval")):
        assert not set(caps[a]) & set(caps[b]), (a, b)
    again = load_scenario("bursty-fluctuating")  # reproducible from the scenario alone
    assert (again.bandwidth(4, "eval").bytes_per_s == sc.bandwidth(4, "eval").bytes_per_s).all()
    with pytest.raises(PrfaasInputError, match="unknown split"):
        sc.bandwidth(0, "test")


def test_recorded_link_is_cut_by_time_like_the_request_trace(tmp_path):
    link = tmp_path / "link.csv"
    link.write_text("time_s,gbps\n" + "".join(f"{t},{10 + t}\n" for t in range(100)))
    d = _base()
    d["bandwidth"] = {"kind": "trace", "path": str(link), "format": "csv"}
    d["workload"]["val_fraction"] = 0.1
    sc = load_scenario(_write(tmp_path, d))
    whole = sc.bandwidth_sampler("all").traces[0]
    assert whole.period_s == 100
    spans = {}
    for split in ("train", "val", "eval"):
        (tr,) = sc.bandwidth_sampler(split).traces
        start = round(100 - tr.period_s) if split == "eval" else {"train": 0, "val": 70}[split]
        # the split's link is the recording from its cut on, and only that
        assert [tr.gbps_at(t) for t in range(round(tr.period_s))] == \
            pytest.approx([whole.gbps_at(start + t) for t in range(round(tr.period_s))])
        spans[split] = round(tr.period_s)
    assert spans == {"train": 70, "val": 10, "eval": 20}


@pytest.mark.parametrize("files, sizes", [(10, [7, 1, 2]), (12, [8, 1, 3]), (8, None),
                                          (2, None)])
def test_a_link_folder_is_split_by_file_when_every_split_gets_one(tmp_path, files, sizes):
    folder = tmp_path / "links"
    folder.mkdir()
    for k in range(files):
        (folder / f"l{k:02d}.csv").write_text(
            "time_s,gbps\n" + "".join(f"{t},{k + 1 + t % 3}\n" for t in range(50)))
    d = _base()
    d["bandwidth"] = {"kind": "trace_dir", "path": str(folder), "format": "csv"}
    d["workload"]["val_fraction"] = 0.1
    sc = load_scenario(_write(tmp_path, d))
    parts = {s: sc.bandwidth_sampler(s).traces for s in ("train", "val", "eval")}
    if sizes:  # whole files, each in exactly one split
        assert [len(parts[s]) for s in parts] == sizes
        assert all(t.period_s == 50 for p in parts.values() for t in p)
        got = [round(t.gbps_at(0)) - 1 for s in parts for t in parts[s]]
        assert sorted(got) == list(range(files))
        assert got != list(range(files))  # not by name order: a sorted folder is mixed
    else:  # too few files for a 10% share: every file cut by time, 70% / 10% / 20%
        assert [[round(t.period_s) for t in parts[s]] for s in parts] == [
            [35] * files, [5] * files, [10] * files]


def test_val_fraction_must_leave_a_train_split(tmp_path):
    from prfaas_gym.errors import PrfaasInputError
    p = tmp_path / "s.yaml"
    p.write_text("name: s\nprofile: paper-case-study\nworkload:\n  synthetic:\n"
                 "    arrivals: {process: poisson, rate: 1.0}\n"
                 "    prompt: {dist: constant, value: 1000}\n"
                 "    output: {dist: constant, value: 8}\n"
                 "  eval_fraction: 0.5\n  val_fraction: 0.5\n"
                 "bandwidth: {kind: constant, gbps: 10}\npolicy: conductor\n")
    with pytest.raises(PrfaasInputError, match="leave no train split") as e:
        load_scenario(str(p))
    assert "workload.val_fraction" in str(e.value)
    p.write_text(p.read_text().replace("  eval_fraction: 0.5\n  val_fraction: 0.5\n",
                                       "  eval_fraction: 0.9\n"))
    with pytest.raises(PrfaasInputError, match=r"val_fraction 0.1 \(its default\)") as e:
        load_scenario(str(p))
    assert "workload.eval_fraction" in str(e.value)


def test_rate_override_scales_a_trace(shared_traces, monkeypatch):
    monkeypatch.setenv("PRFAAS_TRACES", str(shared_traces))
    sc = load_scenario("mooncake-conversation")
    w = sc.workload(0, rate=10.0)
    assert w.mean_rate == pytest.approx(10.0, rel=1e-6)


def test_with_rate_makes_every_run_and_the_plan_play_at_that_rate(shared_traces,
                                                                  monkeypatch):
    """``Scenario.with_rate(R)`` (``--rate``) gives each split the workload that asking for
    rate R gives, a synthetic one's and a trace's (the scenario's or ``--trace``), reports R
    as the mean rate the env's load randomisation scales, records it, and plans for it."""
    monkeypatch.setenv("PRFAAS_TRACES", str(shared_traces))

    def arrivals(w):
        return [(r.arrival_s, r.prompt_tokens) for r in w]

    bursty = load_scenario("bursty-fluctuating")
    mooncake = load_scenario("mooncake-conversation")
    azure = mooncake.with_trace(
        str(shared_traces / "azure-llm-2023/AzureLLMInferenceTrace_code.csv"))
    for sc, rate in ((bursty, 5.0), (mooncake, 2.0), (azure, 6.0)):
        fast = sc.with_rate(rate)
        assert fast.mean_rate("train") == rate and sc.mean_rate("train") != rate
        assert fast.sources()["workload"]["rate"] == rate
        assert fast.sources()["workload"]["rate_given_as"] == "--rate"
        assert "rate_given_as" not in sc.sources()["workload"]
        assert sc.sources()["workload"]["rate"] != rate
        for split in ("train", "eval"):
            assert arrivals(fast.workload(3, n=50, split=split)) \
                == arrivals(sc.workload(3, n=50, split=split, rate=rate))
    # bursty's sessions reuse prefixes, so how much a cache holds depends on the load
    assert bursty.with_rate(5.0).threshold_tokens != bursty.threshold_tokens
    assert bursty.with_rate(5.0).threshold_tokens == bursty.with_rate(5).threshold_tokens
    for bad in (0, -1.0, float("inf"), float("nan"), "3"):
        with pytest.raises(PrfaasInputError, match="--rate"):
            bursty.with_rate(bad)


def test_cached_trace_splits_give_the_windows_a_fresh_scenario_gives(shared_traces,
                                                                      monkeypatch):
    """An env reset reads its window from the split cached on the scenario; the windows, at
    the scenario's rate and after a change of rate, must be those computed from scratch."""
    monkeypatch.setenv("PRFAAS_TRACES", str(shared_traces))

    def arrivals(w):
        return [(r.arrival_s, r.prompt_tokens, r.block_hashes) for r in w]

    warm = load_scenario("mooncake-conversation")
    for split in ("train", "val", "eval"):
        for seed, rate in [(0, None), (1, None), (2, 7.5), (3, 7.5), (4, None)]:
            got = warm.workload(seed, n=64, split=split, rate=rate)
            fresh = load_scenario("mooncake-conversation").workload(seed, n=64, split=split,
                                                                   rate=rate)
            assert arrivals(got) == arrivals(fresh), (split, seed, rate)
    assert warm.split_trace("val") is warm.split_trace("val")
    warm.eval_fraction = 0.5  # a split cached at other fractions must not be served
    fresh = load_scenario("mooncake-conversation")
    fresh.eval_fraction = 0.5
    assert arrivals(warm.split_trace("eval")) == arrivals(fresh.split_trace("eval"))
    assert arrivals(warm.workload(0, n=64, split="eval")) \
        == arrivals(fresh.workload(0, n=64, split="eval"))


# ---------------------------------------------------------------------------------------------
# Trace windows: which requests a run gets from a split, and what its link is called


def _trace_scenario(tmp_path: Path, n: int = 100) -> Scenario:
    """paper-case-study replaying ``n`` requests one second apart (prompt ``1000 + i``)."""
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 1000 + i,
                                     "output_length": 8, "hash_ids": []}) + "\n"
                         for i in range(n)))
    return load_scenario("paper-case-study").with_trace(str(p))


def test_whole_trace_runs_start_at_its_first_request_and_split_windows_are_drawn(tmp_path):
    """``split='all'`` with ``n`` requests replays the trace's first ``n`` whatever the seed
    (as ``simulate --requests`` does); a split's window starts where the seed says."""
    sc = _trace_scenario(tmp_path)
    for seed in range(5):
        assert [r.prompt_tokens for r in sc.workload(seed, n=5)] == [1000, 1001, 1002, 1003,
                                                                     1004]
    starts = {sc.workload(seed, n=5, split="train").requests[0].prompt_tokens
              for seed in range(10)}
    assert len(starts) > 3 and starts <= set(range(1000, 1066))


def test_every_window_of_a_split_can_be_drawn_including_the_last(tmp_path):
    """A split of ``k`` requests has ``k - n + 1`` windows of ``n``; the one ending at its
    last request is one of them."""
    sc = _trace_scenario(tmp_path)
    train = sc.split_trace("train")
    n = len(train) - 1
    firsts = {sc.workload(seed, n=n, split="train").requests[0].prompt_tokens
              for seed in range(30)}
    assert firsts == {train.requests[0].prompt_tokens, train.requests[1].prompt_tokens}


def test_validation_links_are_named_as_the_val_split():
    """Result files name a run's link; a val run's says it is the val split's."""
    sc = load_scenario("bursty-fluctuating")
    assert sc.bandwidth(0, "val").name.endswith("@val")
    assert all(t.name.endswith("@val") for t in sc.bandwidth_sampler("val").traces)


def test_sources_of_a_scenario_whose_bandwidth_is_a_plain_number(tmp_path):
    # `bandwidth: 100` is shorthand for a constant link: sources() (written by simulate,
    # compare --out and train) must not treat it as a mapping
    d = _base()
    d["bandwidth"] = 100
    sc = load_scenario(_write(tmp_path, d))
    assert sc.sources()["bandwidth"] == 100
    assert sc.bandwidth(0).mean_gbps == pytest.approx(100.0)


def test_with_deployment_runs_as_a_copy_of_the_scenario_deployed_so(tmp_path):
    """--deployment n_prefill=4,n_decode=4 is the scenario file with those counts: the same
    profile, a planned threshold solved again for it, the same runs; sources() records it."""
    from agents.compare import run_policy
    from agents.registry import make_heuristic

    base = load_scenario("bursty-fluctuating")
    d = yaml.safe_load((Path(base.where) if Path(base.where).exists() else
                        Path(__file__).resolve().parents[1] / "prfaas_gym" / "data" /
                        "scenarios" / "bursty-fluctuating.yaml").read_text())
    d["deployment"].update(n_prefill=4, n_decode=4)
    copy = load_scenario(_write(tmp_path, d))
    base_t, base_lambda = base.threshold_tokens, base.planned_lambda  # cached before the copy
    over = base.with_deployment(n_prefill=4, n_decode=4)
    assert (base_t, base_lambda) != (over.threshold_tokens, over.planned_lambda)
    assert over.profile == copy.profile != base.profile
    assert over.threshold_tokens == copy.threshold_tokens != base.threshold_tokens
    assert over.planned_lambda == copy.planned_lambda
    a, _ = run_policy(over, make_heuristic("conductor"), 0, split="eval", n=400)
    b, _ = run_policy(copy, make_heuristic("conductor"), 0, split="eval", n=400)
    assert a["goodput_rps"] == b["goodput_rps"] and a["ttft_s"] == b["ttft_s"]
    assert over.sources()["deployment"] == {"n_prfaas": 4, "n_prefill": 4, "n_decode": 4,
                                            "given_as": "--deployment"}
    assert base.sources()["deployment"] == {"n_prfaas": 4, "n_prefill": 3, "n_decode": 5}
    # with --rate the order does not matter: the plan is solved for both
    a, b = base.with_rate(3.0).with_deployment(n_prefill=4), \
        base.with_deployment(n_prefill=4).with_rate(3.0)
    assert (a.threshold_tokens, a.planned_lambda) == (b.threshold_tokens, b.planned_lambda)


@pytest.mark.parametrize("counts, says", [
    ({"n_prefil": 4}, "unknown key 'n_prefil'"),
    ({"prefix_cache_blocks": 1}, "unknown key"),   # counts only
    ({"n_prefill": -1}, "n_prefill must be an integer >= 0"),
    ({"n_prefill": 2.5}, "n_prefill must be an integer >= 0"),
    ({"n_prefill": True}, "n_prefill must be an integer >= 0"),
    ({"n_decode": 0}, "at least one decode instance"),
    ({"n_prfaas": 0, "n_prefill": 0}, "at least one prefill instance"),
])
def test_with_deployment_refuses_bad_counts_naming_the_option(counts, says):
    with pytest.raises(PrfaasInputError, match=rf"^--deployment: .*{says}"):
        load_scenario("bursty-fluctuating").with_deployment(**counts)
