"""Prefix caches: matching, the snapshot rule, LRU eviction and the global index."""

from __future__ import annotations

import copy
import pickle
import random
from collections import OrderedDict

import pytest

from prfaas_gym.prefix_cache import PrefixCacheIndex


def test_match_and_global_index():
    c = PrefixCacheIndex(3, capacity_blocks=100, block_size=10)
    c.insert(0, [1, 2, 3, 4], 4)
    c.insert(2, [1, 2, 9], 3)
    assert c.matched_blocks([1, 2, 3, 5]) == [3, 0, 2]
    assert c.holders[1] == 0b101
    # never the whole prompt: at least one token is computed
    assert c.usable_hit_tokens([1, 2, 3, 4], 40) == [30, 0, 20]
    assert c.usable_hit_tokens([1, 2, 3, 4], 41) == [40, 0, 20]


def test_snapshot_interval_rounds_hits_down():
    c = PrefixCacheIndex(1, capacity_blocks=100, block_size=10, snapshot_interval_blocks=4)
    c.insert(0, list(range(7)), 7)
    assert c.usable_hit_tokens(list(range(8)), 1000) == [40]


def test_lru_evicts_tails_first_and_updates_index():
    c = PrefixCacheIndex(1, capacity_blocks=3, block_size=10)
    c.insert(0, [1, 2, 3], 3)
    c.insert(0, [7, 8], 2)
    # the oldest entries (the tail of the first prefix) went first
    assert set(c.caches[0]) == {1, 7, 8}
    assert 3 not in c.holders and 2 not in c.holders
    assert c.matched_blocks([1, 2, 3]) == [1]


def test_disabled_cache_never_hits():
    c = PrefixCacheIndex(2, capacity_blocks=0, block_size=10)
    c.insert(0, [1, 2], 2)
    assert c.usable_hit_tokens([1, 2, 3], 100) == [0, 0]


class _ReferenceLRU:
    """The textbook block LRU (an OrderedDict per instance) the lazy cache must equal."""

    def __init__(self, n: int, capacity: int) -> None:
        self.capacity = capacity
        self.caches = [OrderedDict() for _ in range(n)]
        self.holders: dict[int, int] = {}

    def insert(self, i: int, hashes: list[int], n_blocks: int) -> None:
        cache, bit = self.caches[i], 1 << i
        for h in reversed(hashes[:n_blocks]):
            if h in cache:
                cache.move_to_end(h)
            else:
                cache[h] = None
                self.holders[h] = self.holders.get(h, 0) | bit
        while len(cache) > self.capacity:
            old, _ = cache.popitem(last=False)
            m = self.holders[old] & ~bit
            if m:
                self.holders[old] = m
            else:
                del self.holders[old]


@pytest.mark.parametrize("seed", range(6))
def test_lazy_lru_evicts_exactly_like_a_textbook_lru(seed):
    rng = random.Random(seed)
    n_inst, capacity = 3, rng.choice([1, 5, 17, 40])
    lazy = PrefixCacheIndex(n_inst, capacity, block_size=1)
    ref = _ReferenceLRU(n_inst, capacity)
    chains: list[list[int]] = []
    next_id = 0
    for _ in range(400):
        # a request extends a random earlier one's prefix (sharing) or starts fresh
        base = rng.choice(chains)[: rng.randint(0, 12)] if chains and rng.random() < 0.7 else []
        fresh = list(range(next_id, next_id + rng.randint(1, 12)))
        next_id += len(fresh)
        hashes = base + fresh
        chains.append(hashes)
        i, n = rng.randrange(n_inst), rng.randint(0, len(hashes))
        lazy.insert(i, hashes, n)
        ref.insert(i, hashes, n)
        assert [set(c) for c in lazy.caches] == [set(c) for c in ref.caches]
        assert lazy.holders == ref.holders
    for hashes in chains[-50:]:
        assert lazy.matched_blocks(hashes) == [
            next((k for k, h in enumerate(hashes) if h not in c), len(hashes))
            for c in ref.caches]


def test_cache_pickles_with_its_eviction_state():
    c = PrefixCacheIndex(2, capacity_blocks=4, block_size=10)
    c.insert(0, [1, 2, 3], 3)
    c.insert(0, [4, 5], 2)  # evicts 3
    d = pickle.loads(pickle.dumps(c))
    for x in (c, d):
        x.insert(0, [6], 1)  # evicts 2, then the next eviction takes 1
        x.insert(0, [7], 1)
    assert set(d.caches[0]) == set(c.caches[0]) == {4, 5, 6, 7}


def _random_inserts(rng: random.Random, n_inst: int, count: int, first_id: int):
    """(instance, hashes, n_blocks) inserts sharing prefixes, as the textbook test draws."""
    chains: list[list[int]] = []
    next_id = first_id
    for _ in range(count):
        base = rng.choice(chains)[: rng.randint(0, 12)] if chains and rng.random() < 0.7 else []
        fresh = list(range(next_id, next_id + rng.randint(1, 12)))
        next_id += len(fresh)
        hashes = base + fresh
        chains.append(hashes)
        yield rng.randrange(n_inst), hashes, rng.randint(0, len(hashes))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("capacity", [17, 200])  # 200: old log records outlive the copy
def test_deep_copy_evolves_independently_with_the_same_eviction_order(seed, capacity):
    rng = random.Random(seed)
    lazy = PrefixCacheIndex(3, capacity, block_size=1)
    ref = _ReferenceLRU(3, capacity)
    for i, hashes, n in _random_inserts(rng, 3, 300, 0):  # well past capacity: evicting
        lazy.insert(i, hashes, n)
        ref.insert(i, hashes, n)
    twin, twin_ref = copy.deepcopy(lazy), copy.deepcopy(ref)
    assert type(twin) is PrefixCacheIndex and twin.version == lazy.version
    # different futures (reusing the same hashes): each copy must still evict exactly like
    # its own textbook LRU
    for (c, r), future in (((lazy, ref), 1), ((twin, twin_ref), 2)):
        for i, hashes, n in _random_inserts(random.Random(100 * seed + future), 3, 300, 0):
            c.insert(i, hashes, n)
            r.insert(i, hashes, n)
            assert [set(x) for x in c.caches] == [set(x) for x in r.caches]
            assert c.holders == r.holders


def test_deep_copy_continues_the_stamp_sequence():
    c = PrefixCacheIndex(1, capacity_blocks=4, block_size=10)
    c.insert(0, [1, 2], 2)
    c.insert(0, [3, 4], 2)  # full; LRU order 2, 1, 4, 3
    d = copy.deepcopy(c)
    d.insert(0, [1], 1)  # 2, 4, 3, 1: a reused stamp would mark 1 as still that of [1, 2]
    d.insert(0, [5], 1)  # evicts 2
    d.insert(0, [6], 1)  # evicts 4, not the just-touched 1
    assert set(d.caches[0]) == {1, 3, 5, 6}
