"""One direction of the inter-datacenter link: a fluid model with max-min fair sharing.

Capacity follows a piecewise-constant :class:`BandwidthTrace`. Concurrent flows share it
max-min fairly (water-filling): a flow capped below its equal share keeps its cap, the rest is
split among the others; rates are recomputed whenever a flow starts, is released, finishes,
or the capacity changes. A flow of ``B`` bytes alone on a constant link of rate ``R`` finishes
after ``B / R`` and is delivered one RTT later.

Layer-wise overlap with prefill (PrfaaS): a KV flow enters the link when its prefill starts.
Its first ``B * (1 - 1/layers)`` bytes are produced at the prefill's pace, so they are capped
at that production rate; the last layer's ``B / layers`` bytes are *held* until the prefill
ends (:meth:`Link.release`), when the cap is lifted. When the link keeps up, the transfer
therefore ends one last-layer chunk after the prefill: ``min(compute, egress)``, not their
sum. (A flow that fell behind production is still capped at the production rate until its
prefill ends, a slight pessimism under congestion.)
"""

from __future__ import annotations

import math
from typing import Any, Final

from mypy_extensions import mypyc_attr

from prfaas_gym._compiled import object_state, restore_state
from prfaas_gym.bandwidth import BandwidthTrace

_EPS_BYTES: Final = 1.0


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
class Flow:
    __slots__ = ("remaining", "held", "cap", "rate", "total", "payload", "start_t")

    def __init__(self, total: float, held: float, cap: float, payload: Any, start_t: float) -> None:
        self.total = total
        self.remaining = total - held
        self.held = held
        self.cap = cap
        self.rate = 0.0
        self.payload = payload
        self.start_t = start_t

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
class Link:
    """A shared link direction. The simulator owns the clock and calls :meth:`advance`."""

    def __init__(self, trace: BandwidthTrace, rtt_s: float) -> None:
        self.trace = trace
        self.rtt_s = rtt_s
        self.flows: list[Flow] = []
        self.t = 0.0
        self.bytes_sent = 0.0
        self.version = 0
        self.capacity = trace.capacity_at(0.0)
        self._next_change = trace.next_change_after(0.0)

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    def advance(self, t: float) -> None:
        """Move the fluid state forward to time ``t`` (rates are constant in between)."""
        dt = t - self.t
        if dt > 0:
            sent = 0.0
            for f in self.flows:
                if f.rate:
                    d = f.rate * dt
                    if d > f.remaining:
                        d = f.remaining
                    f.remaining -= d
                    sent += d
            self.bytes_sent += sent
            self.t = t
        if t >= self._next_change:
            self.capacity, self._next_change = self.trace.segment_at(t)

    def add_flow(self, t: float, total_bytes: float, payload: Any, cap: float = math.inf,
                 held_bytes: float = 0.0) -> Flow:
        self.advance(t)
        f = Flow(total_bytes, held_bytes, cap, payload, t)
        self.flows.append(f)
        self._share()
        return f

    def release(self, t: float, f: Flow) -> None:
        """The producer finished: the held bytes become sendable and the cap is lifted."""
        self.advance(t)
        f.remaining += f.held
        f.held = 0.0
        f.cap = math.inf
        self._share()

    def pop_finished(self, t: float) -> list[Flow]:
        """Advance to ``t`` and remove the flows whose bytes are all sent."""
        self.advance(t)
        done = [f for f in self.flows if self._sent(f, t)]
        if done:
            self.flows = [f for f in self.flows if not self._sent(f, t)]
            self.bytes_sent += sum(f.remaining for f in done)
            for f in done:
                f.remaining = 0.0
        self._share()
        return done

    @staticmethod
    def _sent(f: Flow, t: float) -> bool:
        """All its bytes are sent: under a byte left, or (far from time 0, where a clock tick
        is long) so few that sending them would not move the clock past ``t``, which would
        otherwise re-fire this event forever."""
        if f.held != 0.0:
            return False
        return f.remaining < _EPS_BYTES or (f.rate > 0 and t + f.remaining / f.rate <= t)

    def _share(self) -> None:
        """Max-min fair rates (water-filling over the caps)."""
        active = [f for f in self.flows if f.remaining >= _EPS_BYTES]
        for f in self.flows:
            f.rate = 0.0
        if not active:
            return
        left = self.capacity
        n = len(active)
        if all(f.cap == math.inf for f in active):
            r = left / n
            for f in active:
                f.rate = r
            return
        active.sort(key=lambda f: f.cap)
        for f in active:
            r = left / n
            if f.cap < r:
                r = f.cap
            f.rate = r
            left -= r
            n -= 1

    def next_event_time(self) -> float:
        """Earliest of: a flow finishing its sendable bytes at current rates, a capacity change
        (only while flows are active). ``inf`` when idle."""
        if not self.flows:
            return math.inf
        t = self._next_change
        now = self.t
        for f in self.flows:
            if f.rate > 0:
                tf = now + f.remaining / f.rate
                if tf < t:
                    t = tf
        return t

    def backlog_bytes(self) -> float:
        """Bytes produced but not yet sent (what a sender's socket buffers would hold):
        released flows count all their remaining bytes; a flow whose prefill is still
        running counts only what its prefill has produced beyond what was sent."""
        total = 0.0
        t = self.t
        for f in self.flows:
            if f.held == 0.0:
                total += f.remaining
            else:
                body = f.total - f.held
                produced = min(body, f.cap * (t - f.start_t)) if f.cap != math.inf else body
                total += max(0.0, produced - (body - f.remaining))
        return total

    @property
    def bytes_queued(self) -> float:
        return sum(f.remaining + f.held for f in self.flows)

    @property
    def in_flight(self) -> int:
        return len(self.flows)
