"""``compare`` pairs its runs: on a given seed every policy sees the same requests on the
same link, which is what makes the per-seed ratios in ``heldout.py`` and the README paired."""

from __future__ import annotations

from agents.compare import compare
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
