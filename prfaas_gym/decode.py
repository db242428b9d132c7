"""A decode instance: continuous batching simulated as a fluid model with exact step times.

Every running request emits one token per step; a step with batch ``b`` and total context
``C`` (prompts + tokens so far) takes ``a + s*b + c*C`` seconds (:class:`DecodeCost`). Between
two events the batch is fixed and ``C`` grows by ``b`` per step, so ``n`` steps from a batch
boundary take ``S(n) = n*(a + s*b + c*C0) + c*b*n*(n-1)/2`` — no per-token events are needed.
Requests join and leave only at step boundaries (as in a real engine), so this equals a
per-token simulation exactly. Events happen only when a request finishes or a waiting
request can join at the next boundary.

A request whose KV has arrived joins at the first step boundary at or after its arrival if
there is a free batch slot and KV memory (the full sequence's KV, ``kv_bytes(prompt +
output)``, is reserved at admission; no preemption); otherwise it waits FCFS. Its first token
(computed by prefill) is delivered when it joins; it then needs ``output - 1`` decode steps.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

from prfaas_gym._compiled import object_state, restore_state
from prfaas_gym.profile import DecodeCost

if TYPE_CHECKING:  # typed, a compiled attribute access is native (on an Any, a dict lookup)
    from prfaas_gym.simulator import Job


def clock_tolerance(t: float) -> float:
    """The slack for comparing a computed step boundary with the clock at time ``t``: 1 ns,
    or, far from time 0 (past 2.5e6 s) where a double no longer resolves 1 ns, ``4e-16 t``
    (two to four units in the last place of ``t``)."""
    return max(1e-9, t * 4e-16)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
class DecodeInstance:
    __slots__ = ("index", "cost", "kv_capacity", "max_batch", "running", "batch", "context",
                 "steps", "boundary_t", "waiting", "kv_used", "version", "next_event_t",
                 "_seq", "_a", "_s", "_c", "tokens_out")

    def __init__(self, index: int, cost: DecodeCost, kv_capacity_bytes: float) -> None:
        self.index = index
        self.cost = cost
        self.kv_capacity = kv_capacity_bytes
        self.max_batch = cost.max_batch
        self._a, self._s, self._c = cost.step_base_s, cost.step_per_seq_s, cost.step_per_ctx_token_s
        self.running: list[tuple[int, int, Job]] = []  # heap of (finish_step, seq, job)
        self.batch = 0
        self.context = 0.0  # total context of the batch at the last boundary
        self.steps = 0  # steps done up to the last boundary
        self.boundary_t = 0.0
        self.waiting: deque[Job] = deque()
        self.kv_used = 0.0
        self.version = 0
        self.next_event_t = math.inf
        self._seq = 0
        self.tokens_out = 0

    # -- step arithmetic ---------------------------------------------------------------
    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    def span(self, n: int) -> float:
        """Seconds for ``n`` steps from the last boundary with the current batch."""
        b = self.batch
        c = self._c
        if c == 0.0:
            return n * (self._a + self._s * b)
        return n * (self._a + self._s * b + c * self.context) + c * b * n * (n - 1) / 2

    def steps_by(self, dt: float) -> int:
        """Whole steps completed ``dt`` seconds after the last boundary (with a 1 ns tolerance,
        or a few units in the last place of the clock where those exceed 1 ns)."""
        b = self.batch
        if dt <= 0 or b == 0:
            return 0
        dt += clock_tolerance(self.boundary_t + dt)
        c = self._c
        alpha = self._a + self._s * b + c * self.context
        if c == 0.0:
            n = int(dt / alpha)
            if (n + 1) * alpha <= dt:
                n += 1
            elif n > 0 and n * alpha > dt:
                n -= 1
            return n
        cb = c * b
        h = alpha - cb / 2
        n = int((-h + math.sqrt(h * h + 2 * cb * dt)) / cb)
        while n > 0 and self.span(n) > dt:
            n -= 1
        while self.span(n + 1) <= dt:
            n += 1
        return n

    # -- state changes -------------------------------------------------------------------
    def can_admit(self, job: Job) -> bool:
        return self.batch < self.max_batch and self.kv_used + job.decode_kv_bytes <= self.kv_capacity

    def load(self) -> int:
        return self.batch + len(self.waiting)

    def advance_to(self, t: float) -> None:
        """Move the boundary to ``t``, which must be a step boundary (or the instance idle)."""
        b = self.batch
        if b:
            n = self.steps_by(t - self.boundary_t)
            self.steps += n
            self.context += b * n
            self.tokens_out += b * n
        self.boundary_t = t

    def arrive(self, job: Job, t: float) -> None:
        """The job's KV is here; it queues for the next boundary. Call :meth:`reschedule` after."""
        self.waiting.append(job)
        if self.batch == 0:
            self.boundary_t = t

    def on_boundary(self, t: float, done: list[Job], joined: list[Job]) -> None:
        """Process the boundary at ``t``: finished requests leave, waiting ones join (FCFS)."""
        self.advance_to(t)
        running = self.running
        steps = self.steps
        while running and running[0][0] <= steps:
            job = heapq.heappop(running)[2]
            self.batch -= 1
            self.context -= job.prompt_tokens + job.output_tokens
            self.kv_used -= job.decode_kv_bytes
            job.t_done = t
            done.append(job)
        if self.batch == 0:
            self.kv_used = 0.0  # no float residue: an empty instance admits anything that fits
            self.context = 0.0
        waiting = self.waiting
        while waiting and self.batch < self.max_batch and \
                self.kv_used + waiting[0].decode_kv_bytes <= self.kv_capacity:
            job = waiting.popleft()
            job.t_first_token = t
            joined.append(job)
            if job.output_tokens <= 1:
                job.t_done = t
                done.append(job)
                continue
            self._seq += 1
            heapq.heappush(running, (steps + job.output_tokens - 1, self._seq, job))
            self.batch += 1
            self.context += job.prompt_tokens + 1
            self.kv_used += job.decode_kv_bytes

    def reschedule(self, now: float) -> float:
        """Time of this instance's next event (``inf`` if none); bumps ``version``."""
        self.version += 1
        if self.batch == 0:
            t = now if self.waiting else math.inf
        else:
            t = self.boundary_t + self.span(self.running[0][0] - self.steps)
            waiting = self.waiting
            if waiting and self.batch < self.max_batch and \
                    self.kv_used + waiting[0].decode_kv_bytes <= self.kv_capacity:
                n = self.steps_by(now - self.boundary_t)
                tb = self.boundary_t + self.span(n)
                if tb < now - clock_tolerance(now):
                    tb = self.boundary_t + self.span(n + 1)
                if tb < now:
                    tb = now
                if tb < t:
                    t = tb
        self.next_event_t = t
        return t
