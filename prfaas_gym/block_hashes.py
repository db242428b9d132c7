"""Mooncake-convention block hashes for generated requests (compiled with mypyc: it is the
inner loop of synthetic workload generation, run for every request of every env pool).

A block's hash stands for the block and its whole prefix, so requests that share a prefix
share its leading hashes. A request whose prompt extends a parent's (a later turn of a
session) inherits the parent's *full* blocks; a request that opens with a shared system
prompt inherits that prompt's full blocks; every other block gets a fresh id. Ids are
allocated in request order from 0.
"""

from __future__ import annotations

from typing import Final

from prfaas_gym.request import Request

# Block ids are sliced from one shared tuple of int objects instead of being created per
# pool: a pool of 8,192 requests holds ~550k ids, and allocating them (then freeing them
# with the pool) was 30% of its generation instructions. The table grows to a quarter
# above the largest id used, up to _ID_TABLE_CAP ids (36 bytes each; a bursty-fluctuating
# env pool needs ~550k); ids beyond it are created as before.
_ID_TABLE_CAP: Final = 1 << 21
_id_table: tuple[int, ...] = ()


def _ids(start: int, stop: int) -> tuple[int, ...]:
    """``tuple(range(start, stop))``, sharing the int objects of earlier calls."""
    global _id_table
    if stop > len(_id_table):
        if stop > _ID_TABLE_CAP:
            return tuple(range(start, stop))
        _id_table = tuple(range(min(max(stop + stop // 4, 1 << 16), _ID_TABLE_CAP)))
    return _id_table[start:stop]


def hashed_requests(arrival_s: list[float], prompt_tokens: list[int], output_tokens: list[int],
                    parent: list[int], system_prompt: list[int], system_tokens: list[int],
                    session_id: list[int | None], block_size: int,
                    skip: int = 0) -> list[Request]:
    """Requests ``skip..`` of rows sorted by arrival, with block hashes, ids from 0.

    ``parent[i]``: row of request ``i``'s previous turn (``< i``), or -1. ``system_prompt[i]``:
    index into ``system_tokens`` (the shared prompts' lengths), or -1. Rows before ``skip``
    are hashed (later turns may extend them) but not returned.
    """
    bs = block_size
    chains: dict[int, tuple[int, ...]] = {}
    table: list[tuple[int, ...]] = []
    next_id = 0
    reqs: list[Request] = []
    for i in range(len(prompt_tokens)):
        pp = parent[i]
        prefix: tuple[int, ...]
        if pp >= 0:
            # only the parent's full blocks are identical content; its partial last block and
            # everything after differ (output tokens, new user text)
            prefix = table[pp][: prompt_tokens[pp] // bs]
        elif system_prompt[i] >= 0:
            j = system_prompt[i]
            if j not in chains:
                full = system_tokens[j] // bs
                chains[j] = _ids(next_id, next_id + full)
                next_id += full
            prefix = chains[j]
        else:
            prefix = ()
        fresh = -(-prompt_tokens[i] // bs) - len(prefix)
        h = prefix + _ids(next_id, next_id + fresh)
        next_id += fresh
        table.append(h)
        if i >= skip:
            reqs.append(Request(i - skip, arrival_s[i], prompt_tokens[i], output_tokens[i], h,
                                bs, session_id[i]))
    return reqs
