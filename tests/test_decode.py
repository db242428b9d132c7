"""The decode fluid model equals a per-token simulation."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import pytest

from prfaas_gym.decode import DecodeInstance
from prfaas_gym.profile import DecodeCost
from prfaas_gym.request import Request
from prfaas_gym.simulator import Job


@dataclass
class J:
    prompt_tokens: int
    output_tokens: int
    arrival: float
    decode_kv_bytes: float
    t_first_token: float = math.nan
    t_done: float = math.nan


def per_token_reference(jobs: list[J], cost: DecodeCost, kv_cap: float) -> list[tuple[float, float]]:
    """One loop iteration per decode step: joins at step boundaries, FCFS, KV reservation."""
    pending = deque(sorted(jobs, key=lambda j: j.arrival))
    waiting: deque[J] = deque()
    running: list[list] = []  # [job, remaining steps, context]
    out: dict[int, tuple[float, float]] = {}
    t, kv = 0.0, 0.0
    while pending or waiting or running:
        if not running and not waiting:
            t = max(t, pending[0].arrival)
        while pending and pending[0].arrival <= t + 1e-12:
            waiting.append(pending.popleft())
        while waiting and len(running) < cost.max_batch and kv + waiting[0].decode_kv_bytes <= kv_cap:
            j = waiting.popleft()
            if j.output_tokens <= 1:
                out[id(j)] = (t, t)
                continue
            kv += j.decode_kv_bytes
            running.append([j, j.output_tokens - 1, j.prompt_tokens + 1, t])
        if not running:
            continue
        b = len(running)
        t += cost.step_s(b, sum(r[2] for r in running))
        for r in running:
            r[1] -= 1
            r[2] += 1
        for r in [r for r in running if r[1] == 0]:
            running.remove(r)
            kv -= r[0].decode_kv_bytes
            out[id(r[0])] = (r[3], t)
    return [out[id(j)] for j in jobs]


def fluid(specs: list[J], cost: DecodeCost, kv_cap: float) -> list[tuple[float, float]]:
    inst = DecodeInstance(0, cost, kv_cap)
    jobs = []
    for k, j in enumerate(specs):
        job = Job(Request(k, j.arrival, j.prompt_tokens, j.output_tokens))
        job.decode_kv_bytes = j.decode_kv_bytes
        jobs.append(job)
    order = sorted(jobs, key=lambda j: j.request.arrival_s)
    i = 0
    done: list = []
    joined: list = []
    while True:
        ta = order[i].request.arrival_s if i < len(order) else math.inf
        tn = inst.next_event_t
        if ta == math.inf and tn == math.inf:
            break
        if ta <= tn:
            inst.arrive(order[i], ta)
            inst.reschedule(ta)
            i += 1
        else:
            inst.on_boundary(tn, done, joined)
            inst.reschedule(tn)
    return [(j.t_first_token, j.t_done) for j in jobs]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("coeffs", [(0.02, 0.0, 0.0), (0.01, 0.001, 0.0), (0.008, 0.0005, 2e-7)])
def test_fluid_equals_per_token(seed, coeffs):
    rng = np.random.default_rng(seed)
    a, s, c = coeffs
    cost = DecodeCost(step_base_s=a, step_per_seq_s=s, step_per_ctx_token_s=c, max_batch=4)
    n = 25
    arrivals = np.sort(rng.uniform(0, 3.0, n))
    jobs = [J(int(rng.integers(16, 2000)), int(rng.integers(1, 60)), float(arrivals[k]),
              float(rng.integers(1, 5))) for k in range(n)]
    kv_cap = 10.0
    ref = per_token_reference([J(j.prompt_tokens, j.output_tokens, j.arrival, j.decode_kv_bytes)
                               for j in jobs], cost, kv_cap)
    got = fluid(jobs, cost, kv_cap)
    for (f1, d1), (f2, d2) in zip(ref, got, strict=True):
        assert f2 == pytest.approx(f1, abs=1e-9)
        assert d2 == pytest.approx(d1, abs=1e-9)


def test_full_batch_makes_requests_wait_for_a_slot():
    cost = DecodeCost(step_base_s=0.01, max_batch=1)
    jobs = [J(10, 11, 0.0, 1.0), J(10, 5, 0.0, 1.0)]
    got = fluid(jobs, cost, 100.0)
    assert got[0] == pytest.approx((0.0, 0.10))
    assert got[1] == pytest.approx((0.10, 0.14))
