"""Per-instance LRU prefix caches over block hashes, and the global index of who holds what.

Hashes follow the Mooncake convention: a block's id stands for the block *and its whole
prefix*, so a request's cached prefix on an instance is the run of its leading hashes that
the instance holds. Only full blocks are cached. The hybrid-model rule: the recurrent state is
snapshotted every ``snapshot_interval`` blocks, so a hit is usable only up to the last block
boundary that is a multiple of it, and never the whole prompt (at least one token must be
computed to produce the first output token).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from mypy_extensions import mypyc_attr

from prfaas_gym._compiled import object_state, restore_state


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
class PrefixCacheIndex:
    """LRU caches of ``capacity_blocks`` blocks for ``n_instances`` prefill instances.

    ``holders`` is the global KV index: block hash -> bitmask of the instances holding it.
    Capacity 0 disables caching (every lookup is a miss, inserts are ignored).

    Each cache is an exact LRU kept as an ``OrderedDict`` from least to most recently used
    block: a touch moves a block to the end and eviction pops the front, both O(1) in C and
    neither allocates (a touch that allocated a record per block made the cyclic GC run
    often enough to cost a tenth of an env step).
    """

    def __init__(self, n_instances: int, capacity_blocks: int, block_size: int,
                 snapshot_interval_blocks: int = 1) -> None:
        self.n = n_instances
        self.capacity = capacity_blocks
        self.block_size = block_size
        self.interval = snapshot_interval_blocks
        # keys typed ``object``: compiled, an ``int`` would be unboxed and re-boxed (a fresh
        # int object) on every dict operation
        self.caches: list[OrderedDict[object, None]] = [OrderedDict() for _ in range(n_instances)]
        self.holders: dict[object, int] = {}
        self._all = (1 << n_instances) - 1
        self.version = 0  # bumped on every insert (lets callers reuse a lookup)

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    def matched_blocks(self, hashes: Sequence[int]) -> list[int]:
        """Number of leading blocks of ``hashes`` each instance holds."""
        n = self.n
        counts = [0] * n
        if not self.capacity or not hashes:
            return counts
        holders = self.holders
        mask = self._all
        k = 0
        h: object
        for h in hashes:
            m = holders.get(h, 0) & mask
            if m != mask:
                dropped = mask & ~m
                i = 0
                while dropped:
                    if dropped & 1:
                        counts[i] = k
                    dropped >>= 1
                    i += 1
                mask = m
                if not mask:
                    return counts
            k += 1
        i = 0
        while mask:
            if mask & 1:
                counts[i] = k
            mask >>= 1
            i += 1
        return counts

    def usable_blocks(self, matched: int, prompt_tokens: int) -> int:
        """Blocks of a ``matched``-block prefix that a prefill may reuse (snapshot rule)."""
        m = min(matched, (prompt_tokens - 1) // self.block_size)
        return m - m % self.interval if m > 0 else 0

    def usable_hit_tokens(self, hashes: Sequence[int], prompt_tokens: int) -> list[int]:
        """Usable cached-prefix tokens of this request on every instance."""
        if not self.capacity or not hashes:
            return [0] * self.n
        bs, iv = self.block_size, self.interval
        cap = (prompt_tokens - 1) // bs
        out = []
        for m in self.matched_blocks(hashes):
            if m > cap:
                m = cap
            out.append((m - m % iv) * bs if m > 0 else 0)
        return out

    def insert(self, instance: int, hashes: Sequence[int], n_blocks: int) -> None:
        """Record that ``instance`` now holds the first ``n_blocks`` blocks (and refresh LRU).

        Blocks are touched from the last to the first so that a prefix's leading blocks are
        the most recently used and are evicted after its tail (evicting a leading block would
        strand the rest of the chain).
        """
        if not self.capacity or n_blocks <= 0:
            return
        cache = self.caches[instance]
        holders = self.holders
        bit = 1 << instance
        touch = cache.move_to_end
        keys: Sequence[object] = hashes
        h: object
        for k in range(min(n_blocks, len(hashes)) - 1, -1, -1):
            h = keys[k]
            if h in cache:
                touch(h)
            else:
                cache[h] = None
                holders[h] = holders.get(h, 0) | bit
        evict = cache.popitem
        while len(cache) > self.capacity:
            old = evict(last=False)[0]
            m = holders[old] & ~bit
            if m:
                holders[old] = m
            else:
                del holders[old]
        self.version += 1

    def held_blocks(self, instance: int) -> int:
        return len(self.caches[instance])
