"""Scheduling pieces on their own: queue policy rules, preferred sizes, the rate limiter,
the instance pool's look-ahead and the instance thread."""

from __future__ import annotations

import asyncio

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import InstanceThread, ModelInstance
from naiad.core.scheduling.base import InstanceSlot
from naiad.core.scheduling.default import InstancePool
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


class _Instance(ModelInstance):
    """An instance whose runs the test finishes by hand."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    @property
    def pipeline_depth(self) -> int:
        return self.depth

    async def execute(self, requests, output_names, times):  # type: ignore[no-untyped-def]
        raise AssertionError("not used")


def test_pool_hands_a_pipelined_instance_its_next_request_early() -> None:
    async def scenario() -> None:
        slot = InstanceSlot(_Instance(depth=2))
        pool = InstancePool([slot], rate_limiter=None, pipelined=True)
        first, second = await pool.acquire(), await pool.acquire()
        assert first is slot and second is slot
        third = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0)
        assert not third.done()  # two at a time, no more
        pool.release(first)
        assert await third is slot

    asyncio.run(scenario())


def test_pool_does_not_look_ahead_for_batchers_or_under_a_rate_limiter() -> None:
    async def held_at_once(pool: InstancePool) -> int:
        count = 0
        while True:
            try:
                await asyncio.wait_for(pool.acquire(), 0.01)
            except TimeoutError:
                return count
            count += 1

    async def scenario() -> None:
        slot = InstanceSlot(_Instance(depth=2))
        assert await held_at_once(InstancePool([slot], None)) == 1
        limiter = RateLimiter({})
        assert await held_at_once(InstancePool([slot], limiter, pipelined=True)) == 1
        assert await held_at_once(InstancePool([slot], None, pipelined=True)) == 2

    asyncio.run(scenario())


def test_pool_removes_an_instance_only_once_its_look_ahead_drained() -> None:
    async def scenario() -> None:
        first, second = InstanceSlot(_Instance(depth=2)), InstanceSlot(_Instance(depth=2))
        pool = InstancePool([first, second], rate_limiter=None, pipelined=True)
        # Entries interleave instances: first, second, first; second's other entry is idle.
        held = [await pool.acquire() for _ in range(3)]
        assert [slot is first for slot in held] == [True, False, True]
        removal = asyncio.create_task(pool.remove(1))
        await asyncio.sleep(0.01)
        assert not removal.done()  # ``second`` still runs a request
        pool.release(held[1])
        assert await removal == [second]
        pool.release(held[0])
        pool.release(held[2])
        # Only ``first`` is handed out from now on, two at a time.
        assert all([await pool.acquire() is first for _ in range(2)])

    asyncio.run(scenario())


def test_pool_serves_waiters_before_a_later_request() -> None:
    async def scenario() -> None:
        slot = InstanceSlot(_Instance(depth=1))
        pool = InstancePool([slot], rate_limiter=None)
        order: list[str] = []

        async def earlier() -> None:
            held = await pool.acquire()
            order.append("earlier")
            pool.release(held)

        held = await pool.acquire()
        waiting = asyncio.create_task(earlier())
        await asyncio.sleep(0)  # it waits for the instance
        pool.release(held)
        # A request arriving before the waiter has run must not take the freed entry.
        later = await pool.acquire()
        order.append("later")
        pool.release(later)
        await waiting
        assert order == ["earlier", "later"]

    asyncio.run(scenario())


def test_pool_passes_on_an_entry_whose_waiter_was_cancelled() -> None:
    async def scenario() -> None:
        slot = InstanceSlot(_Instance(depth=1))
        pool = InstancePool([slot], rate_limiter=None)
        held = await pool.acquire()
        first = asyncio.create_task(pool.acquire())
        second = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0)
        pool.release(held)  # handed to ``first`` ...
        first.cancel()  # ... which is cancelled before it runs
        assert await asyncio.wait_for(second, 1) is slot
        with pytest.raises(asyncio.CancelledError):
            await first
        # Nothing leaked: after ``second`` releases, the entry is free again.
        pool.release(slot)
        assert await asyncio.wait_for(pool.acquire(), 1) is slot

    asyncio.run(scenario())


def test_instance_thread_runs_work_in_order_and_survives_a_failing_item() -> None:
    thread = InstanceThread("test-instance")
    seen: list[int] = []

    def boom() -> None:
        raise RuntimeError("broken item")

    thread.post(seen.append, 1)
    thread.post(boom)
    thread.post(seen.append, 2)
    assert thread.call(lambda: list(seen)) == [1, 2]
    with pytest.raises(ValueError, match="from the thread"):
        thread.call(_raise_value_error)
    thread.shutdown()
    assert seen == [1, 2]


def _raise_value_error() -> None:
    raise ValueError("from the thread")
