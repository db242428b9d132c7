"""Per-instance LRU prefix caches over block hashes, and the global index of who holds what.

Hashes follow the Mooncake convention: a block's id stands for the block *and its whole
prefix*, so a request's cached prefix on an instance is the run of its leading hashes that
the instance holds. Only full blocks are cached. The hybrid-model rule: the recurrent state is
snapshotted every ``snapshot_interval`` blocks, so a hit is usable only up to the last block
boundary that is a multiple of it, and never the whole prompt (at least one token must be
computed to produce the first output token).
"""

from __future__ import annotations

from collections.abc import Sequence

from mypy_extensions import mypyc_attr

from prfaas_gym._compiled import object_state, restore_state
from prfaas_gym.coerce import as_tuple


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
class PrefixCacheIndex:
    """LRU caches of ``capacity_blocks`` blocks for ``n_instances`` prefill instances.

    ``holders`` is the global KV index: block hash -> bitmask of the instances holding it.
    Capacity 0 disables caching (every lookup is a miss, inserts are ignored).

    Each cache is an exact LRU kept lazily. ``caches[i]`` maps each held block to the stamp
    (a number) of the last insert that touched it, and ``_log[i]`` lists the inserts
    ``(stamp, hashes, n)`` oldest first. An insert touches its blocks from the last to the
    first, so the least recently used block is found by walking the log from the oldest
    insert, each from its last block, to the first block whose stamp is still that
    insert's. The walk is a cursor that only moves forward. A touch is one dict store (no
    reordering), and a cache below capacity does no eviction work at all. The hashes of one
    request are distinct (each stands for its whole prefix); if one repeats, its eviction
    order follows its first touch in that insert.
    """

    def __init__(self, n_instances: int, capacity_blocks: int, block_size: int,
                 snapshot_interval_blocks: int = 1) -> None:
        self.n = n_instances
        self.capacity = capacity_blocks
        self.block_size = block_size
        self.interval = snapshot_interval_blocks
        # keys typed ``object``: compiled, an ``int`` would be unboxed and re-boxed (a fresh
        # int object) on every dict operation
        # stamps are ints, not the log records: a dict of atomic keys and values stays out
        # of the cyclic GC, which would otherwise traverse every cached block
        self.caches: list[dict[object, object]] = [{} for _ in range(n_instances)]
        self.holders: dict[object, int] = {}
        self._log: list[list[tuple[object, tuple[object, ...], int]]] = [
            [] for _ in range(n_instances)]
        self._stamp = 0
        self._head = [0] * n_instances  # first record of _log[i] eviction has not finished
        self._done = [0] * n_instances  # blocks of that record already examined (from its end)
        self._all = (1 << n_instances) - 1
        self.version = 0  # bumped on every insert (lets callers reuse a lookup)

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    def __deepcopy__(self, memo: dict[int, object]) -> PrefixCacheIndex:
        """A copy whose caches evolve independently; the logged hash tuples, never mutated,
        are shared (a generic deep copy copies every one: 33x slower, 2000 requests into a bursty
        run)."""
        twin = type(self)(self.n, self.capacity, self.block_size, self.interval)
        twin.caches = [dict(c) for c in self.caches]
        twin.holders = dict(self.holders)
        twin._log = [list(g) for g in self._log]
        twin._stamp = self._stamp
        twin._head = list(self._head)
        twin._done = list(self._done)
        twin.version = self.version
        memo[id(self)] = twin
        return twin

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
        if not self.capacity:
            return
        keys: tuple[object, ...] = as_tuple(hashes)
        n = min(n_blocks, len(keys))
        if n <= 0:
            return
        cache = self.caches[instance]
        holders = self.holders
        bit = 1 << instance
        self._stamp += 1
        stamp: object = self._stamp  # boxed once: every block of this insert shares it
        self._log[instance].append((stamp, keys, n))
        h: object
        for k in range(n - 1, -1, -1):
            h = keys[k]
            size = len(cache)
            cache[h] = stamp
            if len(cache) != size:  # new on this instance (so its bit is not in holders)
                m = holders.setdefault(h, bit)  # one lookup for a block no one else holds
                if m != bit:
                    holders[h] = m | bit
        if len(cache) > self.capacity:
            self._evict(instance)
        self.version += 1

    def _evict(self, instance: int) -> None:
        """Drop least recently used blocks of ``instance`` until it is within capacity."""
        cache = self.caches[instance]
        log = self._log[instance]
        holders = self.holders
        keep = ~(1 << instance)
        head = self._head[instance]
        done = self._done[instance]
        h: object
        while len(cache) > self.capacity:
            stamp, keys, n = log[head]
            k = n - 1 - done
            while k >= 0 and len(cache) > self.capacity:
                h = keys[k]
                k -= 1
                if cache.get(h) == stamp:  # not touched since (== : pickling copies ints)
                    del cache[h]
                    m = holders[h] & keep
                    if m:
                        holders[h] = m
                    else:
                        del holders[h]
            done = n - 1 - k
            if k < 0:
                head += 1
                done = 0
        if head > 64 and 2 * head > len(log):  # forget consumed records
            del log[:head]
            head = 0
        self._head[instance] = head
        self._done[instance] = done

    def held_blocks(self, instance: int) -> int:
        return len(self.caches[instance])
