"""The discrete-event simulator of a PrfaaS deployment.

One remote PrfaaS cluster of prefill-only instances, one local PD cluster of nodes that are
either prefill (PD-P) or decode (PD-D) and may switch role, and an inter-datacenter link
(a :class:`~prfaas_gym.link.Link` per direction) between them. Any count may be zero, so
homogeneous PD (no remote instances) and naive heterogeneous (no local prefill) deployments
are the same code.

Life of a request (times are simulated seconds; nothing depends on the wall clock):
1. It arrives; the router (a :class:`~prfaas_gym.contract.Policy`, or the env's agent)
   sees a :class:`RequestInfo` and a possibly stale :class:`ClusterView` and decides.
2. Optional: its cached prefix is copied from another instance first (over the link, in the
   direction of the copy, when the clusters differ; over RDMA otherwise).
3. It prefills FCFS on one instance. The usable cached prefix there is reused; the time is
   ``PrefillCost.time_with_cache(new, cached)``; blocks are inserted into the instance's LRU
   cache when it ends.
4. Its KV (``kv_fixed + kv_per_token * new_tokens`` bytes) moves to a decode instance:
   remote prefills stream it over the link layer by layer, local ones over RDMA.
5. It joins the decode batch at the next step boundary (first token delivered: TTFT) and
   leaves after ``output - 1`` more steps (:mod:`prfaas_gym.decode`).

Conservation: every arrived request ends completed, rejected, failed (its KV cannot fit any
decode instance) or is still in flight when the run stops; :meth:`Simulator.counts` adds up.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, cast

from mypy_extensions import mypyc_attr

from prfaas_gym._compiled import object_state, pickle_by_constructor, restore_state
from prfaas_gym.bandwidth import BandwidthTrace
from prfaas_gym.contract import (
    Cluster,
    ClusterView,
    Decision,
    LinkView,
    Placement,
    Policy,
    RequestInfo,
    Role,
    RoleChange,
)
from prfaas_gym.decode import DecodeInstance
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.link import Flow, Link
from prfaas_gym.prefix_cache import PrefixCacheIndex
from prfaas_gym.profile import GIB, MIB, Profile
from prfaas_gym.request import MAX_TOKENS, Request, Workload


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Simulator knobs.

    ``telemetry_interval_s``: how often the router's load snapshot is refreshed (0 = every
    decision sees the true state). ``admission_max_wait_s``: optional admission control — a
    request whose chosen prefill instance has a longer estimated wait is rejected.
    ``max_drain_s``: after the last arrival, stop at most this long later (the rest is in
    flight; ``inf``, the default: no limit). Every other time must be finite.
    ``record_timeseries``: sample queue depths and link use every telemetry tick (without
    it, and without a tick handler, telemetry stops refreshing after the last arrival:
    nothing reads it during the drain).
    """

    telemetry_interval_s: float = 1.0
    admission_max_wait_s: float | None = None
    max_drain_s: float = math.inf
    record_timeseries: bool = True

    def __post_init__(self) -> None:
        t = self.telemetry_interval_s
        if not (math.isfinite(t) and t >= 0):
            raise PrfaasInputError(f"telemetry_interval_s must be a finite number >= 0, got {t!r}")
        a = self.admission_max_wait_s
        if a is not None and not (math.isfinite(a) and a >= 0):
            raise PrfaasInputError("admission_max_wait_s must be a finite number >= 0 (or null: no "
                                   f"admission control), got {a!r}")
        if not (self.max_drain_s >= 0):  # inf (the default) = no limit; NaN fails too
            raise PrfaasInputError(f"max_drain_s must be a number >= 0 (or inf: no limit), got "
                                   f"{self.max_drain_s!r}")


class JobState(IntEnum):
    COPYING = 0
    PREFILL = 1
    TRANSFER = 2
    DECODE = 3
    DONE = 4
    REJECTED = 5
    FAILED = 6


class NodeState(IntEnum):
    ACTIVE = 0
    DRAINING = 1
    SWITCHING = 2


# Enum members as Final module constants: compiled, ``JobState.DONE`` is a module-dict
# lookup and a class-attribute lookup on every use (~0.1 us); a Final name is a C static.
_COPYING: Final = JobState.COPYING
_PREFILL: Final = JobState.PREFILL
_TRANSFER: Final = JobState.TRANSFER
_DECODING: Final = JobState.DECODE
_DONE: Final = JobState.DONE
_REJECTED: Final = JobState.REJECTED
_FAILED: Final = JobState.FAILED
_ACTIVE: Final = NodeState.ACTIVE
_DRAINING: Final = NodeState.DRAINING
_SWITCHING: Final = NodeState.SWITCHING
_AT_LOCAL: Final = Placement.LOCAL
_AT_REMOTE: Final = Placement.REMOTE
_REJECT: Final = Placement.REJECT
_LOCAL_C: Final = Cluster.LOCAL
_REMOTE_C: Final = Cluster.REMOTE
_DECODE_ROLE: Final = Role.DECODE
_PREFILL_ROLE: Final = Role.PREFILL


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
class Job:
    """A request in the simulator, with its timeline (``nan`` until reached)."""

    __slots__ = ("request", "prompt_tokens", "output_tokens", "state", "placement",
                 "prefill_idx", "decode_idx", "hit_tokens", "new_tokens", "kv_bytes",
                 "decode_kv_bytes", "t_prefill_start", "t_prefill_end", "t_kv_arrival",
                 "t_first_token", "t_done", "flow")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.prompt_tokens = request.prompt_tokens
        self.output_tokens = request.output_tokens
        self.state = _PREFILL
        self.placement = _AT_LOCAL
        self.prefill_idx = -1
        self.decode_idx: int | None = None
        self.hit_tokens = 0
        self.new_tokens = 0
        self.kv_bytes = 0.0
        self.decode_kv_bytes = 0.0
        self.t_prefill_start = math.nan
        self.t_prefill_end = math.nan
        self.t_kv_arrival = math.nan
        self.t_first_token = math.nan
        self.t_done = math.nan
        self.flow: Flow | None = None

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)


# Event kinds (ints keep the heap fast). Module constants are Final throughout the compiled
# modules: compiled, a plain module global is a dict lookup on every use.
_PREFILL_START: Final = 0
_PREFILL_END: Final = 1
_LINK: Final = 2
_KV_ARRIVAL: Final = 3
_DECODE: Final = 4
_COPY_DONE: Final = 5
_TELEMETRY: Final = 6
_TICK: Final = 7
_SWITCH_DONE: Final = 8
_DRAIN_DONE: Final = 9
_LOCAL_KV_ARRIVAL: Final = 10
_DOWN: Final = 0  # link directions: remote -> local, local -> remote
_UP: Final = 1


# The event queue: a binary heap of (time, seq, kind, payload) ordered by (time, seq). The
# same order as heapq's (seq is unique, so the payload is never compared), with the two
# keys compared natively. Entries are moved as plain objects: compiled, a typed tuple would
# be unboxed on every read and boxed into a new tuple on every store.
Event = tuple[float, int, int, object]


def _before(a: object, b: object) -> bool:
    """Event ``a`` comes before event ``b``: (time, seq) is smaller."""
    ea = cast(tuple[object, ...], a)  # reads two items (the Event cast would unbox four)
    eb = cast(tuple[object, ...], b)
    ta, tb = cast(float, ea[0]), cast(float, eb[0])
    return ta < tb or (ta == tb and cast(int, ea[1]) < cast(int, eb[1]))


def _heap_push(heap: list[object], e: object) -> None:
    heap.append(e)
    pos = len(heap) - 1
    while pos > 0:
        up = (pos - 1) >> 1
        p = heap[up]
        if not _before(e, p):
            break
        heap[pos] = p
        pos = up
    heap[pos] = e


def _heap_pop(heap: list[object]) -> object:
    """Remove and return the first event (the heap must not be empty)."""
    last = heap.pop()
    if not heap:
        return last
    top = heap[0]
    n = len(heap)
    pos = 0
    child = 1
    while child < n:
        c = heap[child]
        if child + 1 < n and _before(heap[child + 1], c):
            child += 1
            c = heap[child]
        if not _before(c, last):
            break
        heap[pos] = c
        pos = child
        child = 2 * pos + 1
    heap[pos] = last
    return top


def _refuse_prompts_past_the_prefill_curve(profile: Profile, workload: Workload) -> None:
    """A fitted prefill polynomial may turn down past the prompts it was fitted on
    (:meth:`Profile.prefill_limit`); a longer prompt is refused, naming its request."""
    if profile.prefill_limit()[0] >= MAX_TOKENS or not workload.requests:
        return  # every prompt a trace may hold: nothing to look for
    longest = workload.requests[0]
    for r in workload.requests:
        if r.prompt_tokens > longest.prompt_tokens:
            longest = r
    profile.refuse_prefill_past_limit(longest.prompt_tokens, f"request {longest.id}")


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
class Simulator:
    """Event loop over a workload. Drive it with :meth:`run` (a :class:`Policy`) or step by
    step: ``while (r := sim.next_request()) is not None: sim.apply(r, decide(r, sim.view(r)))``
    then :meth:`finish`.
    """

    def __init__(self, profile: Profile, workload: Workload,
                 bandwidth: BandwidthTrace | None = None, config: SimConfig | None = None,
                 uplink_bandwidth: BandwidthTrace | None = None) -> None:
        self.profile = profile
        self.workload = workload
        self.config = config or SimConfig()
        self.bandwidth = bandwidth or BandwidthTrace.constant(profile.link.capacity_gbps)
        self.uplink_bandwidth = uplink_bandwidth or self.bandwidth
        _refuse_prompts_past_the_prefill_curve(profile, workload)
        if profile.deployment.n_prfaas > 0:  # KV on a link that never carries would never land
            for trace, what in ((self.bandwidth, "link"), (self.uplink_bandwidth, "uplink")):
                if trace.mean_bytes_per_s <= 0:
                    raise PrfaasInputError(f"the {what}'s capacity is zero throughout, so KV "
                                           "sent over it would never arrive", trace.name)
        self.tick_handler: Callable[[ClusterView], list[RoleChange]] | None = None
        self.tick_interval_s: float | None = None
        self._pause_ticks = False  # run_to_tick: stop at a tick instead of running it
        self._paused = False
        self.reset()

    # ------------------------------------------------------------------ set-up
    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    def reset(self) -> None:
        p, dep, model = self.profile, self.profile.deployment, self.profile.model
        self.now = 0.0
        self._heap: list[object] = []  # Event tuples
        self._seq = 0
        self._next_arrival = 0
        self.n_remote = R = dep.n_prfaas
        self.n_local = L = dep.n_prefill + dep.n_decode
        n_pf = R + L
        self.prefill_cluster: list[int] = [int(_REMOTE_C)] * R + [int(_LOCAL_C)] * L
        self.prefill_cost = [p.prfaas_hw.prefill] * R + [p.local_hw.prefill] * L
        self.busy_until = [0.0] * n_pf
        self.queued_tokens = [0.0] * n_pf
        self.queued_reqs = [0] * n_pf
        self.node_role = [_PREFILL_ROLE if j < dep.n_prefill else _DECODE_ROLE for j in range(L)]
        self.node_state = [_ACTIVE] * L
        self.node_target = list(self.node_role)
        self.prefill_available = [True] * R + [r == _PREFILL_ROLE for r in self.node_role]
        dcost = p.local_hw.decode
        self.decode = [DecodeInstance(j, dcost, dcost.kv_capacity_gib * GIB) for j in range(L)]
        self._decode_kv_caps = [d.kv_capacity for d in self.decode]  # constant: views copy
        self._decode_max_batch = [d.max_batch for d in self.decode]
        self.decode_available = [r == _DECODE_ROLE for r in self.node_role]
        # cache blocks are the granularity of the workload's hashes (Mooncake: 512 tokens)
        self.cache = PrefixCacheIndex(n_pf, dep.prefix_cache_blocks, self.workload.block_size,
                                      model.snapshot_interval_blocks)
        rtt = self.bandwidth.rtt_s or p.link.rtt_s
        self.links = [Link(self.bandwidth, rtt), Link(self.uplink_bandwidth, rtt)]
        self.rdma_bytes_per_s = dep.rdma_gbps * 1e9 / 8
        self.jobs: list[Job] = []
        self.completed: list[Job] = []
        self.n_rejected = 0
        self.n_failed = 0
        self.n_slo_met = 0  # completions within both SLOs (the env's reward counts these)
        self.n_ttft_met = 0  # first tokens within the TTFT SLO (the env's first_token reward)
        self.n_tpot_missed = 0  # completions that met the TTFT SLO but missed the TPOT SLO
        self.n_offloaded = 0
        self.n_role_switches = 0
        self.role_switch_times: list[float] = []  # when each switch landed (s), in order
        self.copy_bytes = [0.0, 0.0]
        self.kv_link_bytes = 0.0
        self.hit_tokens_total = 0
        self.prompt_tokens_total = 0
        self._in_flight = 0
        self._pending_arrival: Request | None = None
        self._hits_key: tuple[int, int] | None = None
        self._hits: list[int] = []
        self.timeseries: dict[str, list[float]] = {k: [] for k in (
            "t", "remote_queue_tokens", "local_queue_tokens", "decode_running",
            "decode_waiting", "link_gbps", "link_capacity_gbps", "link_deliverable_gbps",
            "in_flight")}
        # telemetry snapshot and what this router dispatched since it
        self._recent_ttft: deque[float] = deque(maxlen=64)
        self._recent_slo: deque[bool] = deque(maxlen=64)
        self._recent_tpot: deque[float] = deque(maxlen=64)
        self._ewma_rate = 0.0
        self._ewma_offload = 0.0
        self._arrivals_since = 0
        self._offloads_since = 0
        self._snap_link_bytes = [0.0, 0.0]
        self._snap_t = 0.0
        self._recent_dirty = True
        self._take_snapshot(0.0)
        if self.config.telemetry_interval_s > 0:
            self._push(self.config.telemetry_interval_s, _TELEMETRY, None)
        self._first_arrival = workload_first(self.workload)
        if self.tick_interval_s:
            self._push(self.tick_interval_s, _TICK, None)

    def fork(self, tick_handler: Callable[[ClusterView], list[RoleChange]] | None = None
             ) -> Simulator:
        """An independent copy of the simulation as it stands, for look-ahead and planning.

        Decisions applied to the fork leave this simulator untouched, and the same calls on
        both give the same results (the simulation is deterministic). What never changes
        after it is made is shared, not copied: the profile, the workload and its requests,
        the bandwidth traces, the config and finished (completed, rejected, failed) jobs.
        The in-flight state and the prefix index are copied; the history is only walked
        (13 ms, about half of it the index, 2000 requests into a bursty run).
        Call it between :meth:`apply` and :meth:`next_request` or with a request pending;
        the pending request is carried over.

        ``tick_handler``: what the fork's ticks call (the schedule is kept). By default the
        same handler as this simulator's, so a stateful policy's ``on_tick`` sees the fork's
        ticks too; pass the handler of a separate policy object to keep them apart.
        """
        if tick_handler is not None and self.tick_interval_s is None:
            raise ValueError("fork(tick_handler=...): this simulation has no tick schedule "
                             "(set_tick_handler was not called)")
        memo: dict[int, object] = {}
        p = self.profile
        for x in (p, p.local_hw, p.prfaas_hw, p.local_hw.prefill, p.local_hw.decode,
                  p.prfaas_hw.prefill, p.prfaas_hw.decode, p.model, p.deployment, p.link, p.slo,
                  self.workload, self.config, self.bandwidth, self.uplink_bandwidth,
                  self.tick_handler):
            memo[id(x)] = x
        for r in self.workload.requests:
            memo[id(r)] = r
        for j in self.jobs:
            if j.state == _DONE or j.state == _REJECTED or j.state == _FAILED:
                memo[id(j)] = j
        twin = cast(Simulator, copy.deepcopy(self, memo))
        if tick_handler is not None:
            twin.tick_handler = tick_handler
        return twin

    def set_tick_handler(self, handler: Callable[[ClusterView], list[RoleChange]] | None,
                         interval_s: float | None) -> None:
        """Call ``handler(view)`` every ``interval_s`` simulated seconds (role changes)."""
        self.tick_handler = handler
        self.tick_interval_s = interval_s if handler else None
        if self.tick_interval_s:
            self._push(self.now + self.tick_interval_s, _TICK, None)

    def _push(self, t: float, kind: int, payload: object) -> None:
        self._seq += 1
        _heap_push(self._heap, (t, self._seq, kind, payload))

    # ------------------------------------------------------------------ driving
    def next_request(self) -> Request | None:
        """Process events up to the next arrival and return that request (``None`` when the
        workload is exhausted). The caller must :meth:`apply` a decision before calling again."""
        if self._pending_arrival is not None:
            raise RuntimeError("apply() a decision for the pending request first")
        self._check_not_paused()
        reqs = self.workload.requests
        if self._next_arrival >= len(reqs):
            return None
        r = reqs[self._next_arrival]
        if r.arrival_s < self.now:
            raise RuntimeError(f"request {r.id} arrives at t={r.arrival_s:g} s, before the "
                               f"simulator's clock (t={self.now:g} s): either advance() went "
                               "past its decision, or the workload is not sorted by arrival "
                               "(Workload.from_requests sorts)")
        self._run_until(r.arrival_s, inclusive=False)
        self.now = r.arrival_s
        self._next_arrival += 1
        self._pending_arrival = r
        return r

    def request_info(self, r: Request) -> RequestInfo:
        return RequestInfo(r.id, r.arrival_s, r.prompt_tokens, r.block_hashes, r.block_size,
                           r.session_id)

    def run(self, policy: Policy, seed: int | None = None) -> dict:
        """Route the whole workload with ``policy``, drain, and return the result dict."""
        policy.reset(self.profile, seed)
        interval = _tick_interval(policy)
        if interval:
            self.set_tick_handler(policy.on_tick, interval)
        decide, view, info = policy.decide, self.view, self.request_info
        while (r := self.next_request()) is not None:
            self.apply(r, decide(info(r), view(r)))
        self.finish()
        return self.result()

    def finish(self, max_drain_s: float | None = None) -> None:
        """Process remaining events, up to ``max_drain_s`` after the last arrival."""
        self._check_not_paused()
        limit = self.config.max_drain_s if max_drain_s is None else max_drain_s
        reqs = self.workload.requests
        last = reqs[-1].arrival_s if reqs else 0.0
        self._run_until(last + limit, inclusive=True)

    def advance(self, until: float) -> None:
        """Process events up to time ``until`` without deciding arrivals. A request that
        arrives before ``until`` has missed its decision: :meth:`next_request` then raises
        rather than move the clock back (a look-ahead on a fork stops routing this way)."""
        self._check_not_paused()
        self._run_until(until, inclusive=True)

    # ------------------------------------------------------------------ decisions
    def apply(self, r: Request, d: Decision) -> Job:
        """Execute decision ``d`` for the pending request ``r`` at the current time."""
        if self._pending_arrival is not r:
            raise RuntimeError("apply() must follow next_request() for the same request")
        self._pending_arrival = None
        t = self.now
        job = Job(r)
        self.jobs.append(job)
        self._arrivals_since += 1
        if d.placement == _REJECT:
            return self._reject(job)
        idx = self._pick_prefill(d)
        if idx < 0:
            return self._reject(job)
        if self.config.admission_max_wait_s is not None and \
                self.busy_until[idx] - t > self.config.admission_max_wait_s:
            return self._reject(job)
        self._in_flight += 1
        job.placement = _AT_REMOTE if self.prefill_cluster[idx] == _REMOTE_C \
            else _AT_LOCAL
        if job.placement == _AT_REMOTE:
            self.n_offloaded += 1
            self._offloads_since += 1
        dec = d.decode_instance
        job.decode_idx = dec if dec is not None and 0 <= dec < self.n_local else None
        src = d.copy_prefix_from
        if src is not None and src != idx and 0 <= src < len(self.busy_until) and r.block_hashes:
            hits = self._hits_for(r)  # usable tokens, whole blocks; the view's lookup
            if hits[src] > hits[idx]:
                self._start_copy(job, src, idx, hits[src] // self.cache.block_size, t)
                return job
        self._enqueue_prefill(job, idx, t)
        return job

    def _reject(self, job: Job) -> Job:
        job.state = _REJECTED
        self.n_rejected += 1
        return job

    def _pick_prefill(self, d: Decision) -> int:
        """The decision's instance if valid, else the least-wait available instance of the
        decision's cluster, else of the other cluster; -1 if none is available."""
        avail = self.prefill_available
        i = d.prefill_instance
        want = _REMOTE_C if d.placement == _AT_REMOTE else _LOCAL_C
        if i is not None and 0 <= i < len(avail) and avail[i] and self.prefill_cluster[i] == want:
            return i
        best, best_t = -1, math.inf
        for cluster in (want, _LOCAL_C if want == _REMOTE_C else _REMOTE_C):
            for j, c in enumerate(self.prefill_cluster):
                if c == cluster and avail[j] and self.busy_until[j] < best_t:
                    best, best_t = j, self.busy_until[j]
            if best >= 0:
                return best
        return -1

    def _start_copy(self, job: Job, src: int, dst: int, blocks: int, t: float) -> None:
        model = self.profile.model
        nbytes = model.kv_bytes(blocks * self.cache.block_size)
        job.state = _COPYING
        job.prefill_idx = dst
        payload = (job, dst, blocks)
        src_c, dst_c = self.prefill_cluster[src], self.prefill_cluster[dst]
        if src_c == dst_c:
            self._push(t + nbytes / self.rdma_bytes_per_s + self.profile.deployment.rdma_latency_s,
                       _COPY_DONE, payload)
            return
        direction = _UP if src_c == _LOCAL_C else _DOWN
        self.copy_bytes[direction] += nbytes
        link = self.links[direction]
        link.add_flow(t, nbytes, payload)
        self._schedule_link(direction)

    def _enqueue_prefill(self, job: Job, i: int, t: float) -> None:
        r = job.request
        hit = 0
        if r.block_hashes and self.cache.capacity:
            hit = self._hits_for(r)[i]
        new = r.prompt_tokens - hit
        self.hit_tokens_total += hit
        self.prompt_tokens_total += r.prompt_tokens  # of routed requests: a rejection has no hit
        job.hit_tokens, job.new_tokens, job.prefill_idx = hit, new, i
        job.state = _PREFILL
        model = self.profile.model
        job.kv_bytes = model.kv_bytes(new)
        job.decode_kv_bytes = model.kv_bytes(r.prompt_tokens + r.output_tokens)
        dur = self.prefill_cost[i].time_with_cache(new, hit)
        start = self.busy_until[i] if self.busy_until[i] > t else t
        end = start + dur
        self.busy_until[i] = end
        self.queued_tokens[i] += new
        self.queued_reqs[i] += 1
        self._disp_tokens[i] += new
        self._disp_reqs[i] += 1
        self._disp_s[i] += dur
        job.t_prefill_start, job.t_prefill_end = start, end
        if self.prefill_cluster[i] == _REMOTE_C:
            if start <= t:
                self._start_remote_flow(job, t)
            else:
                self._push(start, _PREFILL_START, job)
            self._push(end, _PREFILL_END, job)
        else:
            # RDMA keeps up with the layer-wise stream; the last layer's share follows the
            # prefill. One event: the prefill's bookkeeping is done when its KV lands.
            rate = self.rdma_bytes_per_s
            kv = job.kv_bytes
            arrive = end + kv / self.profile.model.layers / rate
            if start + kv / rate > arrive:
                arrive = start + kv / rate
            self._push(arrive + self.profile.deployment.rdma_latency_s, _LOCAL_KV_ARRIVAL, job)

    def _start_remote_flow(self, job: Job, t: float) -> None:
        layers = self.profile.model.layers
        tail = job.kv_bytes / layers
        body = job.kv_bytes - tail
        dur = job.t_prefill_end - job.t_prefill_start
        cap = body / dur if dur > 0 else math.inf
        job.flow = self.links[_DOWN].add_flow(t, job.kv_bytes, job, cap=cap, held_bytes=tail)
        self.kv_link_bytes += job.kv_bytes
        self._schedule_link(_DOWN)

    # ------------------------------------------------------------------ the event loop
    def _run_until(self, t_stop: float, inclusive: bool) -> None:
        heap = self._heap
        while heap:
            t0 = cast(float, cast(tuple[object, ...], heap[0])[0])
            if not (t0 < t_stop or (inclusive and t0 <= t_stop)):
                break
            t, _, kind, payload = cast(Event, _heap_pop(heap))
            self.now = t
            if kind == _DECODE:
                inst_idx, version = cast(tuple[int, int], payload)
                inst = self.decode[inst_idx]
                if version == inst.version:
                    self._decode_boundary(inst, t)
            elif kind == _LOCAL_KV_ARRIVAL:
                self._prefill_done(payload)  # type: ignore[arg-type]
                self._kv_arrival(payload, t)  # type: ignore[arg-type]
            elif kind == _PREFILL_END:
                self._prefill_end(payload, t)  # type: ignore[arg-type]
            elif kind == _KV_ARRIVAL:
                self._kv_arrival(payload, t)  # type: ignore[arg-type]
            elif kind == _LINK:
                direction, version = cast(tuple[int, int], payload)
                if version == self.links[direction].version:
                    self._link_event(direction, t)
            elif kind == _PREFILL_START:
                self._start_remote_flow(payload, t)  # type: ignore[arg-type]
            elif kind == _TELEMETRY:
                self._take_snapshot(t)
                self._schedule_telemetry(t)
            elif kind == _COPY_DONE:
                job, dst, blocks = cast(tuple[Job, int, int], payload)
                self.cache.insert(dst, job.request.block_hashes, blocks)
                if not self.prefill_available[dst]:  # it began to drain meanwhile
                    want = _AT_REMOTE if self.prefill_cluster[dst] == _REMOTE_C \
                        else _AT_LOCAL
                    dst = self._pick_prefill(Decision(want))
                    if dst < 0:
                        self._fail(job)
                        continue
                self._enqueue_prefill(job, dst, t)
            elif kind == _TICK:
                if self._pause_ticks:  # run_to_tick: the caller decides, then end_tick
                    self._paused = True
                    return
                self._tick(t)
            elif kind == _SWITCH_DONE:
                self._switch_done(payload, t)  # type: ignore[arg-type]
            elif kind == _DRAIN_DONE:
                self._begin_switch(payload, t)  # type: ignore[arg-type]
        if t_stop > self.now and t_stop != math.inf:
            self.now = t_stop

    def _schedule_telemetry(self, t: float) -> None:
        """Next refresh one interval on; across an idle gap (nothing in flight, so nothing
        changes) jump to the last refresh time before the next arrival. After the last
        arrival, refreshes stop unless a tick handler or the time series reads them (the
        drain makes no decision)."""
        dt = self.config.telemetry_interval_s
        reqs = self.workload.requests
        more = self._next_arrival < len(reqs)
        if not more and self.tick_handler is None and not self.config.record_timeseries:
            return
        if self._in_flight:
            self._push(t + dt, _TELEMETRY, None)
        elif more:
            ta = reqs[self._next_arrival].arrival_s
            self._push(max(t + dt, math.floor(ta / dt) * dt), _TELEMETRY, None)

    def _prefill_done(self, job: Job) -> None:
        i = job.prefill_idx
        self.queued_tokens[i] -= job.new_tokens
        self.queued_reqs[i] -= 1
        r = job.request
        if r.block_hashes and self.cache.capacity:
            self.cache.insert(i, r.block_hashes, r.prompt_tokens // self.cache.block_size)
        job.state = _TRANSFER

    def _prefill_end(self, job: Job, t: float) -> None:
        """A remote prefill ended: its held last-layer KV may go."""
        self._prefill_done(job)
        self.links[_DOWN].release(t, cast(Flow, job.flow))
        self._schedule_link(_DOWN)

    def _schedule_link(self, direction: int) -> None:
        link = self.links[direction]
        link.version += 1
        tn = link.next_event_time()
        if tn < math.inf:
            self._push(max(tn, self.now), _LINK, (direction, link.version))

    def _link_event(self, direction: int, t: float) -> None:
        link = self.links[direction]
        for f in link.pop_finished(t):
            payload = f.payload
            if isinstance(payload, Job):
                self._push(t + link.rtt_s, _KV_ARRIVAL, payload)
            else:
                self._push(t + link.rtt_s, _COPY_DONE, payload)
        self._schedule_link(direction)

    def _kv_arrival(self, job: Job, t: float) -> None:
        job.t_kv_arrival = t
        j = job.decode_idx
        if j is None or not self.decode_available[j]:
            j = self._least_loaded_decode(job)
            if j < 0:
                self._fail(job)
                return
        inst = self.decode[j]
        if job.decode_kv_bytes > inst.kv_capacity:
            self._fail(job)
            return
        job.decode_idx = j
        job.state = _DECODING
        inst.arrive(job, t)
        self._reschedule_decode(inst, t)

    def _fail(self, job: Job) -> None:
        job.state = _FAILED
        self.n_failed += 1
        self._in_flight -= 1

    def _least_loaded_decode(self, job: Job) -> int:
        best, best_load = -1, math.inf
        for j, inst in enumerate(self.decode):
            if self.decode_available[j] and job.decode_kv_bytes <= inst.kv_capacity:
                load = inst.batch + len(inst.waiting) + inst.kv_used / inst.kv_capacity
                if load < best_load:
                    best, best_load = j, load
        return best

    def _reschedule_decode(self, inst: DecodeInstance, t: float) -> None:
        tn = inst.reschedule(t)
        if tn < math.inf:
            self._push(tn, _DECODE, (inst.index, inst.version))

    def _decode_boundary(self, inst: DecodeInstance, t: float) -> None:
        done: list[Job] = []
        joined: list[Job] = []
        inst.on_boundary(t, done, joined)
        slo = self.profile.slo
        if joined or done:
            self._recent_dirty = True
        for job in joined:
            ttft = job.t_first_token - job.request.arrival_s
            self._recent_ttft.append(ttft)
            self.n_ttft_met += ttft <= slo.ttft_s
        for job in done:
            job.state = _DONE
            self._in_flight -= 1
            self.completed.append(job)
            ttft = job.t_first_token - job.request.arrival_s
            tpot = (job.t_done - job.t_first_token) / (job.output_tokens - 1) \
                if job.output_tokens > 1 else 0.0
            self._recent_tpot.append(tpot)
            ttft_met = ttft <= slo.ttft_s
            met = ttft_met and tpot <= slo.tpot_s
            self.n_slo_met += met
            self.n_tpot_missed += ttft_met and not met
            self._recent_slo.append(met)
        self._reschedule_decode(inst, t)
        j = inst.index
        if self.node_state[j] == _DRAINING and self.node_role[j] == _DECODE_ROLE \
                and inst.batch == 0 and not inst.waiting:
            self._begin_switch(j, t)

    # ------------------------------------------------------------------ roles
    def _tick(self, t: float) -> None:
        changes = None
        if self.tick_handler is not None:
            changes = self.tick_handler(self._build_view(None))
        self._finish_tick(changes or [])

    def _check_not_paused(self) -> None:
        if self._paused:
            raise RuntimeError("a tick is paused (run_to_tick returned True): call end_tick() "
                               "before running the simulation on")

    def run_to_tick(self, until: float, inclusive: bool = False) -> bool:
        """Process events before ``until`` (through it with ``inclusive``) as :meth:`advance`
        does, but stop at the first tick: return True with the clock at the tick, before
        its handler would run, so that the caller decides on :meth:`view` (``None``) what
        the handler would have, then calls :meth:`end_tick` with the role changes. Events
        run in exactly the order :meth:`run` gives them, so an agent stepped this way sees
        what a policy's ``on_tick`` sees. Returns False when ``until`` came first.
        A tick schedule must be set (:meth:`set_tick_handler`). Until :meth:`end_tick`, the
        simulation refuses to run on (RuntimeError): the tick's next one is not yet due."""
        self._check_not_paused()
        self._pause_ticks = True
        try:
            self._run_until(until, inclusive)
        finally:
            self._pause_ticks = False
        return self._paused

    def end_tick(self, changes: list[RoleChange]) -> None:
        """Finish the tick :meth:`run_to_tick` paused at: request ``changes``, then schedule
        the next tick while work remains (what a tick does after its handler returns).
        RuntimeError when no tick is paused."""
        if not self._paused:
            raise RuntimeError("end_tick() without a paused tick (run_to_tick did not return "
                               "True, or end_tick was already called)")
        self._paused = False
        self._finish_tick(changes)

    def _finish_tick(self, changes: list[RoleChange]) -> None:
        for c in changes:
            self.request_role_change(c)
        more = self._in_flight or self._next_arrival < len(self.workload.requests)
        if self.tick_interval_s and more:
            self._push(self.now + self.tick_interval_s, _TICK, None)

    def request_role_change(self, change: RoleChange) -> bool:
        """Start switching a local node's role; refused (False) if it is already switching,
        already in that role, or it would leave no available prefill or decode instance."""
        j, role = change.node, change.role
        if not 0 <= j < self.n_local or self.node_state[j] != _ACTIVE \
                or self.node_role[j] == role:
            return False
        R = self.n_remote
        if role == _DECODE_ROLE and sum(self.prefill_available) <= 1:
            return False
        if role == _PREFILL_ROLE and sum(self.decode_available) <= 1:
            return False
        self.node_state[j] = _DRAINING
        self.node_target[j] = role
        t = self.now
        if self.node_role[j] == _PREFILL_ROLE:
            self.prefill_available[R + j] = False
            self._push(max(t, self.busy_until[R + j]), _DRAIN_DONE, j)
        else:
            self.decode_available[j] = False
            inst = self.decode[j]
            if inst.batch == 0 and not inst.waiting:
                self._begin_switch(j, t)
        return True

    def _begin_switch(self, j: int, t: float) -> None:
        if self.node_state[j] != _DRAINING:
            return
        self.node_state[j] = _SWITCHING
        self._push(t + self.profile.deployment.switch_delay_s, _SWITCH_DONE, j)

    def _switch_done(self, j: int, t: float) -> None:
        role = self.node_target[j]
        self.node_role[j] = role
        self.node_state[j] = _ACTIVE
        self.n_role_switches += 1
        self.role_switch_times.append(t)
        R = self.n_remote
        self.prefill_available[R + j] = role == _PREFILL_ROLE
        self.decode_available[j] = role == _DECODE_ROLE
        if role == _PREFILL_ROLE:
            self.busy_until[R + j] = max(self.busy_until[R + j], t)

    # ------------------------------------------------------------------ telemetry
    def _take_snapshot(self, t: float) -> None:
        """Telemetry refresh at ``t``: copy the raw load figures; what a view derives from
        them (waits, link views, recent latency stats) is computed when a view asks."""
        dt = t - self._snap_t
        self._snap_t = t
        self._snap_busy = self.busy_until[:]
        self._snap_qtok = self.queued_tokens[:]
        self._snap_qreq = self.queued_reqs[:]
        dec = self.decode
        self._snap_running = [d.batch for d in dec]
        self._snap_waiting = [len(d.waiting) for d in dec]
        # KV in use: each running request's fixed state + per-token KV of its context so far
        model = self.profile.model
        self._snap_kv = [(model.kv_fixed_mib * d.batch + model.kv_per_token_mib * d.context) * MIB
                         for d in dec]
        n = len(self.busy_until)
        self._disp_tokens = [0.0] * n
        self._disp_reqs = [0] * n
        self._disp_s = [0.0] * n
        raw = []
        for k, link in enumerate(self.links):
            link.advance(t)
            sent = link.bytes_sent
            measured = (sent - self._snap_link_bytes[k]) / dt if dt > 0 else 0.0
            self._snap_link_bytes[k] = sent
            raw.append((link.capacity, measured, link.backlog_bytes() if link.flows else 0.0,
                        len(link.flows), link.rtt_s))
        self._snap_link_raw = raw
        self._snap_derived = False
        if self._recent_dirty:
            rt, rp, rs = self._recent_ttft, self._recent_tpot, self._recent_slo
            self._snap_recent = (sorted(rt)[(len(rt) * 9) // 10] if rt else 0.0,
                                 sum(rp) / len(rp) if rp else 0.0,
                                 sum(rs) / len(rs) if rs else 1.0)
            self._recent_dirty = False
        if dt > 0:
            a = 1.0 - math.exp(-dt / 10.0)  # ~10 s memory
            self._ewma_rate += a * (self._arrivals_since / dt - self._ewma_rate)
            if self._arrivals_since:
                frac = self._offloads_since / self._arrivals_since
                self._ewma_offload += a * (frac - self._ewma_offload)
        self._arrivals_since = self._offloads_since = 0
        if self.config.record_timeseries and self.config.telemetry_interval_s > 0:
            ts = self.timeseries
            R = self.n_remote
            cap, measured = raw[0][0], raw[0][1]
            ts["t"].append(t)
            ts["remote_queue_tokens"].append(sum(self.queued_tokens[:R]))
            ts["local_queue_tokens"].append(sum(self.queued_tokens[R:]))
            ts["decode_running"].append(float(sum(self._snap_running)))
            ts["decode_waiting"].append(float(sum(self._snap_waiting)))
            ts["link_gbps"].append(measured * 8e-9)
            ts["link_capacity_gbps"].append(cap * 8e-9)
            # what the link could have carried since the last tick: measured / this is at most 1
            ts["link_deliverable_gbps"].append(
                self.bandwidth.integral(t - dt, t) / dt * 8e-9 if dt > 0 else cap * 8e-9)
            ts["in_flight"].append(float(self._in_flight))

    def _derive_snapshot(self) -> None:
        t = self._snap_t
        self._snap_wait = [b - t if b > t else 0.0 for b in self._snap_busy]
        self._snap_links = [LinkView(cap * 8e-9, m * 8e-9, m / cap if cap > 0 else 1.0, q, f, rtt)
                            for cap, m, q, f, rtt in self._snap_link_raw]
        self._snap_derived = True

    def _hits_for(self, r: Request) -> list[int]:
        """Usable prefix hits of ``r`` per instance; one lookup per request and cache state."""
        key = (r.id, self.cache.version)
        if self._hits_key != key:
            self._hits_key = key
            self._hits = self.cache.usable_hit_tokens(r.block_hashes, r.prompt_tokens)
        return self._hits

    def view(self, r: Request | None) -> ClusterView:
        """The router's view for request ``r`` (``None``: no per-request prefix hits)."""
        return self._build_view(r)

    def _build_view(self, r: Request | None) -> ClusterView:
        t = self.now
        if self.config.telemetry_interval_s == 0:
            self._take_snapshot(t)
        if not self._snap_derived:
            self._derive_snapshot()
        age = t - self._snap_t
        ds = self._disp_s
        wait = [(w - age if w > age else 0.0) + ds[i] for i, w in enumerate(self._snap_wait)]
        dt = self._disp_tokens
        qtok = [q + dt[i] for i, q in enumerate(self._snap_qtok)]
        dr = self._disp_reqs
        qreq = [q + dr[i] for i, q in enumerate(self._snap_qreq)]
        if r is not None and r.block_hashes and self.cache.capacity:
            hits = self._hits_for(r)[:]  # the router's copy: the simulator reuses its own
        else:
            hits = [0] * len(wait)
        return ClusterView(
            time_s=t, snapshot_time_s=self._snap_t,
            prefill_cluster=self.prefill_cluster[:], prefill_available=self.prefill_available[:],
            prefill_queued_tokens=qtok, prefill_queued_requests=qreq, prefill_wait_s=wait,
            prefix_hit_tokens=hits,
            decode_available=list(self.decode_available),
            decode_running=self._snap_running[:], decode_waiting=self._snap_waiting[:],
            decode_kv_used_bytes=self._snap_kv[:],
            decode_kv_capacity_bytes=self._decode_kv_caps[:],
            decode_max_batch=self._decode_max_batch[:],
            link=self._snap_links[0], uplink=self._snap_links[1],
            arrival_rate=self._ewma_rate, offload_fraction=self._ewma_offload,
            ttft_p90_s=self._snap_recent[0], tpot_mean_s=self._snap_recent[1],
            slo_attainment=self._snap_recent[2],
        )

    # ------------------------------------------------------------------ results
    def counts(self) -> dict[str, int]:
        """Conservation: ``arrived == completed + rejected + failed + in_flight``."""
        return {"arrived": len(self.jobs), "completed": len(self.completed),
                "rejected": self.n_rejected, "failed": self.n_failed, "in_flight": self._in_flight}

    def result(self, wall_s: float | None = None) -> dict:
        from prfaas_gym.metrics import summarize
        return summarize(self, wall_s)


def _tick_interval(policy: Any) -> float | None:
    """``policy.tick_interval_s`` as Python reads it. Typed ``Any`` on purpose: compiled, a
    ``Policy``-typed read takes the native slot and misses a subclass's class attribute
    (``class P(Policy): tick_interval_s = 30.0``), so such a policy never ticked."""
    return policy.tick_interval_s


def workload_first(w: Workload) -> float:
    return w.requests[0].arrival_s if w.requests else 0.0


pickle_by_constructor(SimConfig)
