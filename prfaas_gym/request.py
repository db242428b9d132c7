"""The one request schema every workload loader and generator produces."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, SupportsFloat, SupportsIndex

from mypy_extensions import mypyc_attr

from prfaas_gym._compiled import object_state, pickle_by_constructor, restore_state
from prfaas_gym.coerce import as_float, as_int, as_list, as_opt_int, as_tuple

#: The most tokens one prompt or output may have (ten million, beyond today's longest
#: context windows): a bound that turns a typo into an error instead of exhausting memory
#: (a prompt's block hashes, the planner's threshold grid), and the longest prompt a
#: profile's prefill curve must be valid for.
MAX_TOKENS: Final = 10_000_000


@dataclass(frozen=True, slots=True)
class Request:
    """One LLM request as a trace records it.

    Contract:
    - ``arrival_s`` is seconds from the start of the workload (>= 0).
    - ``prompt_tokens`` >= 1 and ``output_tokens`` >= 1.
    - ``block_hashes[i]`` identifies the KV block of tokens ``[i*B, (i+1)*B)`` *together with
      its whole prefix* (Mooncake convention), so two requests share a cached prefix of ``k``
      blocks iff their first ``k`` hashes are equal. ``len(block_hashes) <= ceil(prompt/B)``;
      an empty tuple means "no prefix information" (nothing is ever reused).
    - ``block_size`` is ``B`` in tokens.
    - ``output_tokens`` is known to the simulator only; routers never see it.
    """

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    block_hashes: tuple[int, ...] = ()
    block_size: int = 512
    session_id: int | None = None

    # Written out (the dataclass keeps it): compiled with mypyc, a hand-written __init__ is
    # native code (object.__setattr__ becomes a plain store), the generated one interpreted.
    # Arguments are normalised (numpy integers, a list of hashes) as in the other constructors.
    def __init__(self, id: SupportsIndex, arrival_s: SupportsFloat, prompt_tokens: SupportsIndex,
                 output_tokens: SupportsIndex, block_hashes: Sequence[int] = (),
                 block_size: SupportsIndex = 512, session_id: SupportsIndex | None = None) -> None:
        object.__setattr__(self, "id", as_int(id))
        object.__setattr__(self, "arrival_s", as_float(arrival_s))
        object.__setattr__(self, "prompt_tokens", as_int(prompt_tokens))
        object.__setattr__(self, "output_tokens", as_int(output_tokens))
        object.__setattr__(self, "block_hashes", as_tuple(block_hashes))
        object.__setattr__(self, "block_size", as_int(block_size))
        object.__setattr__(self, "session_id", as_opt_int(session_id))


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
@dataclass(slots=True)
class Workload:
    """An ordered list of requests (sorted by arrival) plus where it came from."""

    requests: list[Request]
    name: str = "workload"
    block_size: int = 512
    source: str = field(default="")

    # Written out for the same reasons as Request's.
    def __init__(self, requests: Sequence[Request], name: str = "workload",
                 block_size: SupportsIndex = 512, source: str = "") -> None:
        self.requests = as_list(requests)
        self.name = name
        self.block_size = as_int(block_size)
        self.source = source

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    def __len__(self) -> int:
        return len(self.requests)

    def __iter__(self) -> Iterator[Request]:
        return iter(self.requests)

    def __getitem__(self, i: int) -> Request:
        return self.requests[i]

    @property
    def duration_s(self) -> float:
        """Time between the first and the last arrival (0 for fewer than two requests)."""
        if len(self.requests) < 2:
            return 0.0
        return self.requests[-1].arrival_s - self.requests[0].arrival_s

    @property
    def mean_rate(self) -> float:
        """Mean arrival rate in requests per second ((n - 1) / duration)."""
        d = self.duration_s
        return (len(self.requests) - 1) / d if d > 0 else float("inf")

    @staticmethod
    def from_requests(requests: Sequence[Request], name: str = "workload", block_size: int = 512,
                      source: str = "") -> Workload:
        """Build a workload, sorting by arrival (stable) and renumbering ids 0..n-1."""
        ordered = sorted(requests, key=lambda r: r.arrival_s)
        renumbered = [
            Request(i, r.arrival_s, r.prompt_tokens, r.output_tokens, r.block_hashes,
                    r.block_size, r.session_id)
            for i, r in enumerate(ordered)
        ]
        return Workload(renumbered, name=name, block_size=block_size, source=source)


def rebased_requests(requests: Sequence[Request], time_scale: float = 1.0) -> list[Request]:
    """``requests`` (in arrival order) with arrivals shifted so the first is at 0 and
    multiplied by ``time_scale``, ids renumbered ``0..n-1``; everything else kept."""
    if not requests:
        return []
    t0 = requests[0].arrival_s
    return [Request(k, (r.arrival_s - t0) * time_scale, r.prompt_tokens, r.output_tokens,
                    r.block_hashes, r.block_size, r.session_id) for k, r in enumerate(requests)]


pickle_by_constructor(Request)
