"""Scheduling pieces on their own: queue policy rules, preferred sizes, the rate limiter."""

from __future__ import annotations

import asyncio

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from naiad.core.scheduling.dynamic_batcher import _cut_to_preferred
from naiad.core.scheduling.queue import LevelPolicy, Pending, PriorityQueue
from naiad.core.scheduling.rate_limiter import RateLimiter
from naiad.errors import ModelLoadError, UnavailableError
from naiad.inference import InferenceRequest


def _pending(batch_size: int, level: int = 1, seq: int = 0) -> Pending:
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
    finally:
        loop.close()
    return Pending(InferenceRequest("m"), batch_size, [], future, 0, level, (), seq)


def test_cut_to_the_largest_reachable_preferred_size() -> None:
    batch = [_pending(1), _pending(2), _pending(1), _pending(3)]
    assert len(_cut_to_preferred(batch, [3, 4])) == 3  # 1+2+1 = 4
    assert len(_cut_to_preferred(batch, [2])) == 4  # no prefix sums to 2: send all
    assert len(_cut_to_preferred(batch, [1, 7])) == 4  # 7 is reached by the whole batch


def test_timeout_override_only_lowers() -> None:
    policy = LevelPolicy(default_timeout_us=1000, allow_timeout_override=True)
    assert policy.timeout_us(500) == 500
    assert policy.timeout_us(5000) == 1000
    assert policy.timeout_us(0) == 1000
    assert LevelPolicy(default_timeout_us=1000).timeout_us(500) == 1000
    assert LevelPolicy(allow_timeout_override=True).timeout_us(500) == 500


def test_priority_levels_and_queue_size() -> None:
    batching = mc.ModelDynamicBatching(priority_levels=3, default_priority_level=2)
    batching.priority_queue_policy[1].max_queue_size = 1
    queue = PriorityQueue(batching)
    assert queue.level_for(1) == 1
    assert queue.level_for(0) == 2  # 0 means the default level
    assert queue.level_for(9) == 2  # beyond the levels: the default, as Triton does
    low, high = _pending(1, level=3, seq=0), _pending(1, level=1, seq=1)
    queue.push(low)
    queue.push(high)
    assert list(queue.in_order()) == [high, low]
    with pytest.raises(UnavailableError, match="Exceeds maximum queue size"):
        queue.push(_pending(1, level=1, seq=2))


def test_delay_moves_expired_requests_behind_the_rest() -> None:
    batching = mc.ModelDynamicBatching()
    batching.default_queue_policy.timeout_action = mc.ModelQueuePolicy.DELAY
    queue = PriorityQueue(batching)
    first, second = _pending(1, seq=0), _pending(1, seq=1)
    queue.push(first)
    queue.push(second)
    assert queue.expire(first) is False  # delayed, not rejected
    assert list(queue.in_order()) == [second, first]


def test_rate_limiter_serves_by_priority_then_arrival() -> None:
    async def scenario() -> list[str]:
        limiter = RateLimiter({"R": 1})
        limiter.register({"R": 1}, "m")
        await limiter.acquire({"R": 1}, priority=0)
        order: list[str] = []

        async def wait(label: str, priority: int) -> None:
            await limiter.acquire({"R": 1}, priority)
            order.append(label)
            limiter.release({"R": 1})

        tasks = [
            asyncio.create_task(wait("late-low", 5)),
            asyncio.create_task(wait("high", 1)),
            asyncio.create_task(wait("low", 5)),
        ]
        await asyncio.sleep(0)
        limiter.release({"R": 1})
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["high", "late-low", "low"]


def test_rate_limiter_sizes_implicit_resources_and_checks_explicit_ones() -> None:
    limiter = RateLimiter({"GPU_MEM": 2})
    limiter.register({"A": 3}, "m1")
    limiter.register({"A": 1}, "m2")
    assert limiter.capacity() == {"GPU_MEM": 2, "A": 3}
    with pytest.raises(ModelLoadError, match="allows only 2"):
        limiter.register({"GPU_MEM": 4}, "m3")


def test_batch_input_is_a_clear_load_error() -> None:
    from naiad.core.scheduling.factory import build_scheduler
    from naiad.core.statistics import ModelStatistics

    config = mc.ModelConfig(name="ragged", backend="onnxruntime", max_batch_size=4)
    config.batch_input.add(kind=mc.BatchInput.BATCH_ELEMENT_COUNT, target_name=["N"])
    with pytest.raises(ModelLoadError, match="batch_input / batch_output"):
        build_scheduler(config, [], ModelStatistics(), None, stacks_batches=True)
