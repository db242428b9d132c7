"""The scheduler contract shared by the simulator and the live runtime (see DESIGN.md).

A router sees a :class:`RequestInfo` (never the output length) and a :class:`ClusterView`
(a possibly stale snapshot of the deployment) and returns a :class:`Decision`. Heuristics and
learned policies implement :class:`Policy`; the gym's evaluation and the runtime's router
call the same methods.

Instance numbering is fixed for a deployment so that observation shapes never change:
- prefill instances ``0 .. R-1`` are the remote (PrfaaS) instances, ``R .. R+L-1`` the
  prefill side of the ``L`` local nodes;
- decode instances ``0 .. L-1`` are the decode side of the same local nodes.
A local node is in one role at a time: its prefill slot is ``available`` only in the prefill
role and its decode slot only in the decode role (both are unavailable while it switches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Final, SupportsFloat, SupportsIndex

from mypy_extensions import mypyc_attr

from prfaas_gym._compiled import object_state, pickle_by_constructor, restore_state
from prfaas_gym.coerce import as_float, as_int, as_list, as_opt_int, as_tuple

if TYPE_CHECKING:
    from prfaas_gym.profile import Profile


class Cluster(IntEnum):
    LOCAL = 0
    REMOTE = 1


class Placement(IntEnum):
    """Where a request's prefill runs, or that it is rejected at the door (HTTP 429)."""

    LOCAL = 0
    REMOTE = 1
    REJECT = 2


class Role(IntEnum):
    PREFILL = 0
    DECODE = 1


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a router knows when a request arrives. Never the output length."""

    id: int
    arrival_s: float
    prompt_tokens: int
    block_hashes: tuple[int, ...] = ()
    block_size: int = 512
    session_id: int | None = None

    # Written out (the dataclass keeps it): compiled with mypyc, a hand-written __init__ is
    # native code (object.__setattr__ becomes a plain store), the generated one interpreted.
    # Compiled code checks argument types strictly (a numpy integer is not an int), so the
    # arguments are normalised here, the same compiled or not.
    def __init__(self, id: SupportsIndex, arrival_s: SupportsFloat, prompt_tokens: SupportsIndex,
                 block_hashes: Sequence[int] = (), block_size: SupportsIndex = 512,
                 session_id: SupportsIndex | None = None) -> None:
        object.__setattr__(self, "id", as_int(id))
        object.__setattr__(self, "arrival_s", as_float(arrival_s))
        object.__setattr__(self, "prompt_tokens", as_int(prompt_tokens))
        object.__setattr__(self, "block_hashes", as_tuple(block_hashes))
        object.__setattr__(self, "block_size", as_int(block_size))
        object.__setattr__(self, "session_id", as_opt_int(session_id))


@dataclass(slots=True)
class LinkView:
    """The remote->local inter-datacenter link as telemetry reports it.

    ``measured_gbps`` is the throughput the link delivered over the last telemetry interval
    (bytes actually sent / interval); ``capacity_gbps`` is the link's current capacity as a
    bandwidth probe would report it; ``bytes_queued`` is the backlog: bytes produced (by a
    prefill that streams its KV layer by layer) but not yet sent.
    """

    capacity_gbps: float = 0.0
    measured_gbps: float = 0.0
    utilization: float = 0.0
    bytes_queued: float = 0.0
    transfers_in_flight: int = 0
    rtt_s: float = 0.0

    # Written out for the same reason as RequestInfo's; views are built on every decision.
    def __init__(self, capacity_gbps: SupportsFloat = 0.0, measured_gbps: SupportsFloat = 0.0,
                 utilization: SupportsFloat = 0.0, bytes_queued: SupportsFloat = 0.0,
                 transfers_in_flight: SupportsIndex = 0, rtt_s: SupportsFloat = 0.0) -> None:
        self.capacity_gbps = as_float(capacity_gbps)
        self.measured_gbps = as_float(measured_gbps)
        self.utilization = as_float(utilization)
        self.bytes_queued = as_float(bytes_queued)
        self.transfers_in_flight = as_int(transfers_in_flight)
        self.rtt_s = as_float(rtt_s)

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)


@dataclass(slots=True)
class ClusterView:
    """A snapshot of everything a scheduler may observe, struct-of-arrays.

    Per prefill instance ``i`` (see the module docstring for numbering):
    ``prefill_cluster[i]`` (an int: 0 = local, 1 = remote, as :class:`Cluster`),
    ``prefill_available[i]``,
    ``prefill_queued_tokens[i]`` (incremental tokens queued or running),
    ``prefill_queued_requests[i]``, ``prefill_wait_s[i]`` (estimated time until a newly
    queued request would start), and ``prefix_hit_tokens[i]`` — the usable cached prefix of
    *this* request on instance ``i`` (block-aligned, at a state snapshot), from the global KV
    index. Load figures are as of ``snapshot_time_s`` plus what this router itself dispatched
    since (a router knows its own decisions); the prefix hits are current.

    Per decode instance ``j``: ``decode_available[j]``, ``decode_running[j]``,
    ``decode_waiting[j]``, ``decode_kv_used_bytes[j]`` (KV of the running requests' prompts
    and tokens generated so far), ``decode_kv_capacity_bytes[j]``, ``decode_max_batch[j]``.

    Recent rates (over a sliding window of telemetry intervals): ``arrival_rate``,
    ``offload_fraction``, ``ttft_p90_s``, ``tpot_mean_s``, ``slo_attainment``.
    """

    time_s: float = 0.0
    snapshot_time_s: float = 0.0
    prefill_cluster: list[int] = field(default_factory=list)
    prefill_available: list[bool] = field(default_factory=list)
    prefill_queued_tokens: list[float] = field(default_factory=list)
    prefill_queued_requests: list[int] = field(default_factory=list)
    prefill_wait_s: list[float] = field(default_factory=list)
    prefix_hit_tokens: list[int] = field(default_factory=list)
    decode_available: list[bool] = field(default_factory=list)
    decode_running: list[int] = field(default_factory=list)
    decode_waiting: list[int] = field(default_factory=list)
    decode_kv_used_bytes: list[float] = field(default_factory=list)
    decode_kv_capacity_bytes: list[float] = field(default_factory=list)
    decode_max_batch: list[int] = field(default_factory=list)
    link: LinkView = field(default_factory=LinkView)
    uplink: LinkView = field(default_factory=LinkView)
    arrival_rate: float = 0.0
    offload_fraction: float = 0.0
    ttft_p90_s: float = 0.0
    tpot_mean_s: float = 0.0
    slo_attainment: float = 1.0

    # Written out for the same reason as LinkView's (None stands for an empty list; any
    # sequence is copied into a list).
    def __init__(
        self,
        time_s: SupportsFloat = 0.0,
        snapshot_time_s: SupportsFloat = 0.0,
        prefill_cluster: Sequence[int] | None = None,
        prefill_available: Sequence[bool] | None = None,
        prefill_queued_tokens: Sequence[float] | None = None,
        prefill_queued_requests: Sequence[int] | None = None,
        prefill_wait_s: Sequence[float] | None = None,
        prefix_hit_tokens: Sequence[int] | None = None,
        decode_available: Sequence[bool] | None = None,
        decode_running: Sequence[int] | None = None,
        decode_waiting: Sequence[int] | None = None,
        decode_kv_used_bytes: Sequence[float] | None = None,
        decode_kv_capacity_bytes: Sequence[float] | None = None,
        decode_max_batch: Sequence[int] | None = None,
        link: LinkView | None = None,
        uplink: LinkView | None = None,
        arrival_rate: SupportsFloat = 0.0,
        offload_fraction: SupportsFloat = 0.0,
        ttft_p90_s: SupportsFloat = 0.0,
        tpot_mean_s: SupportsFloat = 0.0,
        slo_attainment: SupportsFloat = 1.0,
    ) -> None:
        self.time_s = as_float(time_s)
        self.snapshot_time_s = as_float(snapshot_time_s)
        self.prefill_cluster = [] if prefill_cluster is None else as_list(prefill_cluster)
        self.prefill_available = [] if prefill_available is None else as_list(prefill_available)
        self.prefill_queued_tokens = [] if prefill_queued_tokens is None else as_list(prefill_queued_tokens)
        self.prefill_queued_requests = [] if prefill_queued_requests is None else as_list(prefill_queued_requests)
        self.prefill_wait_s = [] if prefill_wait_s is None else as_list(prefill_wait_s)
        self.prefix_hit_tokens = [] if prefix_hit_tokens is None else as_list(prefix_hit_tokens)
        self.decode_available = [] if decode_available is None else as_list(decode_available)
        self.decode_running = [] if decode_running is None else as_list(decode_running)
        self.decode_waiting = [] if decode_waiting is None else as_list(decode_waiting)
        self.decode_kv_used_bytes = [] if decode_kv_used_bytes is None else as_list(decode_kv_used_bytes)
        self.decode_kv_capacity_bytes = [] if decode_kv_capacity_bytes is None else as_list(decode_kv_capacity_bytes)
        self.decode_max_batch = [] if decode_max_batch is None else as_list(decode_max_batch)
        self.link = LinkView() if link is None else link
        self.uplink = LinkView() if uplink is None else uplink
        self.arrival_rate = as_float(arrival_rate)
        self.offload_fraction = as_float(offload_fraction)
        self.ttft_p90_s = as_float(ttft_p90_s)
        self.tpot_mean_s = as_float(tpot_mean_s)
        self.slo_attainment = as_float(slo_attainment)

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    @property
    def n_remote(self) -> int:
        return sum(1 for c in self.prefill_cluster if c == Cluster.REMOTE)

    @property
    def n_local_nodes(self) -> int:
        return len(self.decode_available)

    def best_hits(self) -> tuple[int, int]:
        """(best usable cached prefix of this request in the local cluster, in the remote
        cluster), in tokens, over all instances available or not (a draining node's cache
        can still be copied from)."""
        local = remote = 0
        for h, c in zip(self.prefix_hit_tokens, self.prefill_cluster):
            if c:  # remote
                if h > remote:
                    remote = h
            elif h > local:
                local = h
        return local, remote


@dataclass(frozen=True, slots=True)
class Decision:
    """A routing decision.

    ``prefill_instance`` / ``decode_instance``: indices as in the module docstring, or None
    to let the executor pick (least estimated wait in the placement's cluster; least loaded
    decode). ``copy_prefix_from``: a prefill instance whose cached prefix of this request is
    copied (over the link if it is in the other cluster, RDMA otherwise) to the chosen
    instance before the prefill starts.
    """

    placement: Placement
    prefill_instance: int | None = None
    decode_instance: int | None = None
    copy_prefix_from: int | None = None

    # Written out for the same reason as RequestInfo's.
    def __init__(self, placement: Placement | SupportsIndex,
                 prefill_instance: SupportsIndex | None = None,
                 decode_instance: SupportsIndex | None = None,
                 copy_prefix_from: SupportsIndex | None = None) -> None:
        object.__setattr__(self, "placement", placement if type(placement) is Placement
                           else Placement(as_int(placement)))
        object.__setattr__(self, "prefill_instance", as_opt_int(prefill_instance))
        object.__setattr__(self, "decode_instance", as_opt_int(decode_instance))
        object.__setattr__(self, "copy_prefix_from", as_opt_int(copy_prefix_from))


REJECT: Final = Decision(Placement.REJECT)


@dataclass(frozen=True, slots=True)
class RoleChange:
    """Ask local node ``node`` to switch to ``role``. The node drains its current work first,
    then is unavailable for the deployment's ``switch_delay_s``."""

    node: int
    role: Role


@mypyc_attr(allow_interpreted_subclasses=True)  # heuristics subclass it in Python
class Policy:
    """A router. Subclasses override :meth:`decide` and optionally :meth:`on_tick`.

    Contract: :meth:`reset` is called before every episode with the deployment's profile and a
    seed; :meth:`decide` must be deterministic given its inputs and the seeded state;
    :meth:`on_tick` is called every ``tick_interval_s`` seconds of simulated time (never if it
    is None) for long-timescale actions and returns the role changes to apply.
    """

    name: str = "policy"
    tick_interval_s: float | None = None

    # A subclass's state (its __dict__) survives pickling and copying, compiled or not: a
    # policy travels to subprocess envs with the tick handler, and look-aheads copy it.
    def __getstate__(self) -> dict[str, object]:
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    def reset(self, profile: Profile, seed: int | None = None) -> None:
        self.profile = profile

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        raise NotImplementedError

    def on_tick(self, view: ClusterView) -> list[RoleChange]:
        return []


pickle_by_constructor(RequestInfo, Decision, RoleChange)
