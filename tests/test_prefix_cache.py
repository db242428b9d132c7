"""Prefix caches: matching, the snapshot rule, LRU eviction and the global index."""

from __future__ import annotations

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
