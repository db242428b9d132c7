"""``compare`` pairs its runs: on a given seed every policy sees the same requests on the
same link, which is what makes the per-seed ratios in ``heldout.py`` and the README paired."""

from __future__ import annotations

import math
from types import SimpleNamespace

import agents.tuning
from agents.compare import compare, flat_metrics
from agents.registry import make_heuristic
from prfaas_gym.contract import ClusterView, Decision, Policy, RequestInfo
from prfaas_gym.profile import Profile
from prfaas_gym.scenario import load_scenario


class Recording(Policy):
    """A heuristic that records what it was shown: each request and the link at its arrival."""

    def __init__(self, name: str, log: dict[str, list[list[tuple]]]) -> None:
        self.inner, self.label, self.log = make_heuristic(name), name, log

    def reset(self, profile: Profile, seed: int | None = None) -> None:
        super().reset(profile, seed)
        self.inner.reset(profile, seed)
        self.log.setdefault(self.label, []).append([])

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        self.log[self.label][-1].append((request.arrival_s, request.prompt_tokens,
                                         request.block_hashes, view.link.capacity_gbps))
        return self.inner.decide(request, view)


def test_every_policy_sees_the_same_requests_and_link_on_a_seed() -> None:
    sc = load_scenario("bursty-fluctuating")  # a generated, fluctuating link with drops
    log: dict[str, list[list[tuple]]] = {}
    names = ("conductor", "local-only", "remote-all")
    records = compare(sc, {n: (lambda n=n: Recording(n, log)) for n in names}, seeds=2,
                      split="eval", n=60, progress=False)
    assert [(r.policy, r.seed) for r in records] == [(n, s) for s in range(2) for n in names]
    for seed in range(2):
        seen = [log[n][seed] for n in names]
        assert len(seen[0]) == 60 and all(s == seen[0] for s in seen[1:]), seed
        links = {r.result["link"]["trace"] for r in records if r.seed == seed}
        assert len(links) == 1, links
    assert log["conductor"][0] != log["conductor"][1]  # the seeds differ: not one workload


def test_flat_metrics_reports_each_percentile_under_its_own_name():
    """The table's TTFT P90 / P99 and TPOT columns come from the matching statistics."""
    result = {"goodput_rps": 1.0, "throughput_rps": 2.0, "slo_attainment": 0.5,
              "ttft_s": {"mean": 3.0, "p90": 4.0, "p99": 5.0},
              "tpot_s": {"mean": 0.02, "p90": 0.03, "p99": 0.04},
              "offload_fraction": 0.25, "link_utilization": 0.125, "prefix_hit_rate": 0.75,
              "rejected": 7, "role_switches": 2, "role_switches_in_drain": 1,
              "sim_requests_per_s": None}
    m = flat_metrics(result)
    assert (m["ttft_mean_s"], m["ttft_p90_s"], m["ttft_p99_s"], m["tpot_mean_s"]) == \
        (3.0, 4.0, 5.0, 0.02)
    assert m["rejected"] == 7.0 and m["role_switches"] == 2.0
    assert m["role_switches_in_drain"] == 1.0
    assert math.isnan(m["sim_requests_per_s"])


def test_tuning_keeps_the_planners_threshold_on_a_plateau(monkeypatch):
    """Among thresholds of equal goodput the one nearest the planner's (in ratio) wins."""
    base = 10_000.0

    def fake_run(scenario, policy, seed, split="all", n=None, rate=None):
        m = policy.threshold_tokens / base
        return {"goodput_rps": 2.0 if 0.5 <= m <= 2.0 else 1.0}, None

    monkeypatch.setattr(agents.tuning, "run_policy", fake_run)
    best, table = agents.tuning.tune_threshold(SimpleNamespace(threshold_tokens=base),
                                               seeds=(0,))
    assert best == base
    assert table[5000.0] == table[20_000.0] == 2.0 and table[2500.0] == 1.0


def test_the_table_shows_role_switches_when_a_policy_switched_roles(capsys):
    from agents.compare import SUMMARY_METRICS, SeedStat, print_table

    def stats(switches: float, in_drain: float = 0.0) -> dict[str, SeedStat]:
        value = {"role_switches": switches, "role_switches_in_drain": in_drain}
        return {m: SeedStat(value.get(m, 1.0), math.nan, 1) for m in SUMMARY_METRICS}

    print_table({"conductor": stats(0.0), "local-only": stats(0.0)})
    assert "role switches" not in capsys.readouterr().out  # routing only: no empty column
    print_table({"conductor": stats(0.0), "prfaas-dual": stats(3.0)})
    out = capsys.readouterr().out
    assert "role switches" in out
    row = next(line for line in out.splitlines() if "prfaas-dual" in line)
    assert row.rstrip(" │").endswith("3.0")  # a count per run, one decimal
    print_table({"prfaas-dual": stats(3.0, in_drain=0.4)})
    row = next(line for line in capsys.readouterr().out.splitlines() if "prfaas-dual" in line)
    assert row.rstrip(" │").endswith("3.0 (0.4 in the drain)")
