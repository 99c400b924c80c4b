"""Seeded, vectorized generator of proxy requests and of the order in which the proxy writes them.

Pure apart from the :class:`TrafficStream` buffer. A request batch is a ``dict`` of equally long
numpy arrays (one entry per request, times in epoch milliseconds). The pieces:

- :func:`traffic_weight`: the diurnal and weekly shape of traffic;
- :func:`hourly_counts`: how many requests start in each hour of the simulated range;
- :func:`generate_requests`: who calls which model, tokens, price, latency, failures, cache hits;
- :class:`FlushClock`: when each proxy instance flushes its queue (every ~10 s + 0-5 s jitter,
  occasionally a failed flush or a short database outage);
- :class:`TrafficStream`: holds requests until their instance flushes them, and releases them in
  flush order, i.e. out of ``startTime`` order and late, like the proxy writes them;
- :class:`BudgetGate`: the proxy's ``max_budget`` check at authentication for the capped keys,
  applied to generated requests before they are queued.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dagster_project.simulator.budgets import MASTER_KEY_INDEX, NO_KEY, period_labels
from dagster_project.simulator.catalog import (
    FAILURES,
    FLUSH_INTERVAL_S,
    FLUSH_JITTER_S,
    INSTANCE_COUNT,
)
from dagster_project.simulator.population import CappedKey, Population

Batch = dict[str, np.ndarray]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEKEND_FACTOR = 0.3
MASTER_KEY_SHARE = 0.01
NO_KEY_SHARE = 0.004
FAILURE_SHARE = 0.025
CACHE_HIT_SHARE = 0.07
AUTH_FAILURE_KIND = len(FAILURES)  # index of catalog.AUTH_FAILURE after the provider failures
BUDGET_FAILURE_KIND = len(FAILURES) + 1  # index of catalog.BUDGET_FAILURE, after AUTH_FAILURE
STREAMING_SHARE = 0.4
END_USER_SHARE = 0.7  # of requests through customer-facing keys
# Tokens per request: lognormal(mu, sigma), clipped (prompt: embedding or chat mu)
PROMPT_MU_EMBEDDING, PROMPT_MU_CHAT, PROMPT_SIGMA = 5.7, 6.8, 1.0
COMPLETION_MU, COMPLETION_SIGMA = 5.4, 0.8


def traffic_weight(ms: np.ndarray) -> np.ndarray:
    """Relative request rate at epoch-ms instants: a working-day curve in UTC, quiet weekends."""
    ms = np.asarray(ms, dtype=np.int64)
    hour = (ms % DAY_MS) / HOUR_MS
    weekday = (ms // DAY_MS + 3) % 7  # 0 = Monday
    curve = (
        0.12 + np.exp(-(((hour - 14.5) / 3.8) ** 2)) + 0.35 * np.exp(-(((hour - 9.5) / 1.5) ** 2))
    )
    return curve * np.where(weekday >= 5, WEEKEND_FACTOR, 1.0)


_WEEK_MEAN = float(traffic_weight(np.arange(0, 7 * DAY_MS, 60_000)).mean())


def rate_per_ms(requests_per_day: float, at_ms: int) -> float:
    """Expected requests per millisecond at ``at_ms`` for an average of ``requests_per_day``."""
    return requests_per_day / DAY_MS * float(traffic_weight(np.array([at_ms]))[0]) / _WEEK_MEAN


def hourly_counts(seed: int, start_ms: int, end_ms: int, total: int) -> list[tuple[int, int, int]]:
    """Split ``total`` requests over hour-long chunks ``(t0, t1, n)`` of ``[start_ms, end_ms)``."""
    edges = np.append(np.arange(start_ms, end_ms, HOUR_MS, dtype=np.int64), end_ms)
    if len(edges) < 2 or total <= 0:
        return []
    t0, t1 = edges[:-1], edges[1:]
    weights = traffic_weight((t0 + t1) // 2) * (t1 - t0)
    counts = np.random.default_rng([seed, 2]).multinomial(total, weights / weights.sum())
    return [(int(a), int(b), int(n)) for a, b, n in zip(t0, t1, counts, strict=True)]


@dataclass(frozen=True)
class TrafficPlan:
    """Numeric view of the population the request generator samples from."""

    key_weight: np.ndarray
    key_created_ms: np.ndarray
    key_deleted_ms: np.ndarray
    key_model_cum: np.ndarray
    key_customer_facing: np.ndarray
    key_cache_enabled: np.ndarray
    global_model_cum: np.ndarray
    end_user_cum: np.ndarray
    model_input_cost: np.ndarray
    model_output_cost: np.ndarray
    model_is_embedding: np.ndarray
    model_latency_ms: np.ndarray
    model_ms_per_token: np.ndarray
    failure_cum: np.ndarray

    def active_keys(self, t0_ms: int, t1_ms: int) -> np.ndarray:
        """Keys that exist for the whole of ``[t0_ms, t1_ms)``."""
        return (self.key_created_ms <= t0_ms) & (self.key_deleted_ms >= t1_ms)


def build_plan(population: Population) -> TrafficPlan:
    """The sampling arrays of ``population``."""
    from dagster_project.simulator.budgets import epoch_ms

    keys = population.keys
    specs = [d.spec for d in population.deployments]
    model_weights = np.array([k.model_weights for k in keys]).reshape(len(keys), len(specs))
    base = np.array([s.weight for s in specs], dtype=float)
    eu = np.array([e.traffic_weight for e in population.end_users], dtype=float)
    fail = np.array([f.weight for f in FAILURES], dtype=float)
    never = np.iinfo(np.int64).max
    return TrafficPlan(
        key_weight=np.array([k.traffic_weight for k in keys], dtype=float),
        key_created_ms=np.array([epoch_ms(k.created_at) for k in keys], dtype=np.int64),
        key_deleted_ms=np.array(
            [epoch_ms(k.deleted_at) if k.deleted_at else never for k in keys], dtype=np.int64
        ),
        key_model_cum=np.cumsum(model_weights, axis=1),
        key_customer_facing=np.array([k.customer_facing for k in keys], dtype=bool),
        key_cache_enabled=np.array([k.cache_enabled for k in keys], dtype=bool),
        global_model_cum=np.cumsum(base / base.sum()),
        end_user_cum=np.cumsum(eu / eu.sum()) if len(eu) else np.zeros(0),
        model_input_cost=np.array([s.input_cost_per_token for s in specs]),
        model_output_cost=np.array([s.output_cost_per_token for s in specs]),
        model_is_embedding=np.array([s.is_embedding for s in specs], dtype=bool),
        model_latency_ms=np.array([s.latency_ms for s in specs]),
        model_ms_per_token=np.array([s.ms_per_output_token for s in specs]),
        failure_cum=np.cumsum(fail / fail.sum()),
    )


def _pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn by inverse CDF: ``cum`` is 1-D (shared) or 2-D (one CDF per row)."""
    if cum.ndim == 1:
        return np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), len(cum) - 1)
    return np.minimum((u[:, None] * cum[:, -1:] >= cum).sum(axis=1), cum.shape[1] - 1)


def spend_for(
    plan: TrafficPlan, model: np.ndarray, prompt: np.ndarray, completion: np.ndarray
) -> np.ndarray:
    """List-price cost: prompt tokens x input price + completion tokens x output price."""
    return prompt * plan.model_input_cost[model] + completion * plan.model_output_cost[model]


def generate_requests(
    rng: np.random.Generator, plan: TrafficPlan, start_ms: np.ndarray, active: np.ndarray
) -> Batch:
    """One request per entry of ``start_ms`` (sorted), using only keys where ``active``."""
    n = len(start_ms)
    start_ms = np.asarray(start_ms, dtype=np.int64)
    weights = plan.key_weight * active
    kind = rng.random(n)
    if weights.sum() > 0:
        key = rng.choice(len(weights), size=n, p=weights / weights.sum()).astype(np.int64)
    else:
        key = np.full(n, MASTER_KEY_INDEX, dtype=np.int64)
    key = np.where(kind < MASTER_KEY_SHARE, MASTER_KEY_INDEX, key)
    key = np.where(kind > 1 - NO_KEY_SHARE, NO_KEY, key)
    has_key = key >= 0
    safe_key = np.where(has_key, key, 0)

    u_model = rng.random(n)
    model = _pick(plan.global_model_cum, u_model)
    if has_key.any():
        model[has_key] = _pick(plan.key_model_cum[safe_key[has_key]], u_model[has_key])
    embedding = plan.model_is_embedding[model]

    failure = (rng.random(n) < FAILURE_SHARE) | (key == NO_KEY)
    cacheable = np.where(has_key, plan.key_cache_enabled[safe_key], True)
    cache_hit = ~failure & cacheable & (rng.random(n) < CACHE_HIT_SHARE)
    failure_kind = np.where(failure, _pick(plan.failure_cum, rng.random(n)), -1)
    failure_kind = np.where(key == NO_KEY, AUTH_FAILURE_KIND, failure_kind)

    prompt_mu = np.where(embedding, PROMPT_MU_EMBEDDING, PROMPT_MU_CHAT)
    prompt = np.clip(rng.lognormal(prompt_mu, PROMPT_SIGMA), 1, 120_000).astype(np.int64)
    completion = rng.lognormal(COMPLETION_MU, COMPLETION_SIGMA, n)
    completion = np.where(embedding, 0, np.clip(completion, 1, 16_000))
    completion = completion.astype(np.int64)
    prompt = np.where(failure, 0, prompt)
    completion = np.where(failure, 0, completion)
    spend = np.where(failure | cache_hit, 0.0, spend_for(plan, model, prompt, completion))

    latency = plan.model_latency_ms[model] * rng.lognormal(0.0, 0.45, n)
    duration = latency + completion * plan.model_ms_per_token[model] * rng.lognormal(0, 0.2, n)
    duration = np.where(rng.random(n) < 0.005, duration * 8, duration)  # a few very long calls
    duration = np.where(cache_hit, rng.uniform(3, 40, n), duration)
    duration = np.where(failure, 0, duration).astype(np.int64)
    end_ms = start_ms + duration
    streaming = ~failure & ~cache_hit & ~embedding & (rng.random(n) < STREAMING_SHARE)
    ttft = np.minimum(duration, (latency * rng.uniform(0.3, 0.8, n)).astype(np.int64))
    completion_start_ms = np.where(streaming, start_ms + ttft, end_ms)

    facing = np.where(has_key, plan.key_customer_facing[safe_key], False)
    with_end_user = facing & (rng.random(n) < END_USER_SHARE) & (len(plan.end_user_cum) > 0)
    end_user = np.full(n, -1, dtype=np.int64)
    if with_end_user.any():
        end_user[with_end_user] = _pick(plan.end_user_cum, rng.random(int(with_end_user.sum())))

    tag_roll = rng.random(n)
    ids = rng.integers(0, np.iinfo(np.int64).max, size=(n, 8), dtype=np.int64)
    return {
        "key": key,
        "model": model.astype(np.int64),
        "failure_kind": failure_kind.astype(np.int64),
        "cache_hit": cache_hit,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "spend": spend,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "completion_start_ms": completion_start_ms,
        "end_user": end_user,
        "tag_variant": np.where(tag_roll < 0.1, 0, np.where(tag_roll < 0.8, 1, 2)),
        "extra_tag": rng.integers(0, 1 << 30, n),
        "instance": rng.integers(0, INSTANCE_COUNT, n),
        "sub_ms": rng.integers(0, 1000, n),
        "ids": ids,
    }


def concat(batches: list[Batch]) -> Batch:
    """Concatenate batches field by field."""
    batches = [b for b in batches if b and len(b["start_ms"])]
    if not batches:
        return {}
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def take(batch: Batch, index: np.ndarray) -> Batch:
    """The rows of ``batch`` selected by a boolean mask or an index array."""
    return {name: values[index] for name, values in batch.items()}


def batch_len(batch: Batch) -> int:
    """Number of rows in ``batch``."""
    return len(batch["start_ms"]) if batch else 0


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Deterministic uniforms in [0, 1) for each pair ``(a, b)``: counter-based randomness."""
    base = _mix(np.array([(seed * 1_000_003 + stream) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    x = _mix(base ^ np.asarray(a, dtype=np.int64).astype(np.uint64))
    x = _mix(x ^ np.asarray(b, dtype=np.int64).astype(np.uint64))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class FlushClock:
    """Flush instants of each proxy instance: tick k = phase + k x interval + jitter(k).

    A flush fails with probability ``failure_share`` (the rows wait for the next one); during a
    short outage (probability ``outage_share`` per block of ``outage_ticks`` ticks) all flushes
    of that instance fail, so rows arrive minutes late.
    """

    seed: int
    interval_ms: int = int(FLUSH_INTERVAL_S * 1000)
    jitter_ms: int = int(FLUSH_JITTER_S * 1000)
    failure_share: float = 0.01
    outage_share: float = 0.002
    outage_ticks: int = 24

    def phase(self, instance: np.ndarray) -> np.ndarray:
        """Per-instance offset of the tick grid."""
        u = hash_uniform(self.seed, 10, instance, np.zeros_like(instance))
        return (u * self.interval_ms).astype(np.int64)

    def tick(self, instance: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Epoch ms of flush ``k`` of ``instance``."""
        jitter = (hash_uniform(self.seed, 11, instance, k) * self.jitter_ms).astype(np.int64)
        return self.phase(instance) + k * self.interval_ms + jitter

    def failed(self, instance: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Whether flush ``k`` of ``instance`` fails."""
        single = hash_uniform(self.seed, 12, instance, k) < self.failure_share
        outage = hash_uniform(self.seed, 13, instance, k // self.outage_ticks) < self.outage_share
        return single | outage

    def flush_time(self, instance: np.ndarray, end_ms: np.ndarray) -> np.ndarray:
        """When a request that ended at ``end_ms`` on ``instance`` is written."""
        instance = np.asarray(instance, dtype=np.int64)
        k = (np.asarray(end_ms, dtype=np.int64) - self.phase(instance)) // self.interval_ms
        k = np.where(self.tick(instance, k) >= end_ms, k, k + 1)
        for _ in range(10 * self.outage_ticks):
            bad = self.failed(instance, k)
            if not bad.any():
                break
            k = np.where(bad, k + 1, k)
        return self.tick(instance, k)


class TrafficStream:
    """Per-instance spend-log queues: requests go in, flushed rows come out in write order."""

    def __init__(self, clock: FlushClock) -> None:
        self.clock = clock
        self._pending: Batch = {}

    @property
    def pending(self) -> int:
        """Requests waiting for their flush."""
        return batch_len(self._pending)

    def add(self, batch: Batch) -> None:
        """Queue generated requests (stamping each with its flush time)."""
        if not batch_len(batch):
            return
        batch = dict(batch)
        batch["flush_ms"] = self.clock.flush_time(batch["instance"], batch["end_ms"])
        self._pending = concat([self._pending, batch])

    def drain(self, until_ms: int) -> Batch:
        """Rows flushed before ``until_ms``, in write order (flush, instance, queue order)."""
        if not self.pending:
            return {}
        due = self._pending["flush_ms"] < until_ms
        out = take(self._pending, due)
        self._pending = take(self._pending, ~due)
        order = np.lexsort((out["end_ms"], out["instance"], out["flush_ms"]))
        return take(out, order)


def expected_key_spend(plan: TrafficPlan, chunks: list[tuple[int, int, int]]) -> np.ndarray:
    """Expected charged spend of each key in each chunk ``(t0, t1, n)`` of
    :func:`hourly_counts` (keys x chunks), from the same distributions
    :func:`generate_requests` draws from (token clipping ignored): the key's share of the
    chunk's requests, times its mean cost per request (no spend on failures and cache hits)."""
    n_keys = len(plan.key_weight)
    out = np.zeros((n_keys, len(chunks)))
    if not n_keys:
        return out
    share = np.diff(plan.key_model_cum, prepend=0.0, axis=1)
    share /= np.maximum(plan.key_model_cum[:, -1:], 1e-300)
    chat_prompt = np.exp(PROMPT_MU_CHAT + PROMPT_SIGMA**2 / 2)
    embedding_prompt = np.exp(PROMPT_MU_EMBEDDING + PROMPT_SIGMA**2 / 2)
    prompt = np.where(plan.model_is_embedding, embedding_prompt, chat_prompt)
    completion = np.where(
        plan.model_is_embedding, 0.0, np.exp(COMPLETION_MU + COMPLETION_SIGMA**2 / 2)
    )
    per_model = prompt * plan.model_input_cost + completion * plan.model_output_cost
    per_request = (share @ per_model) * (1 - FAILURE_SHARE)
    per_request *= 1 - CACHE_HIT_SHARE * plan.key_cache_enabled
    keyed = 1 - MASTER_KEY_SHARE - NO_KEY_SHARE
    for j, (t0, t1, n) in enumerate(chunks):
        weights = plan.key_weight * plan.active_keys(t0, t1)
        if weights.sum() > 0:
            out[:, j] = n * keyed * weights / weights.sum() * per_request
    return out


class BudgetGate:
    """The proxy's ``max_budget`` check at authentication, for the capped keys.

    Requests are taken in ``startTime`` order (generated chunks come in time order, each sorted)
    and the key's charged spend in its budget period is kept as the proxy keeps its counter: a
    request starting while it is at or over the key's ``max_budget`` is refused (written as a
    :data:`BUDGET_FAILURE_KIND` failure row: spend and tokens 0, no cache hit, ``endTime`` =
    ``startTime``), any other adds its spend. So the request that reaches the cap is still
    served, and every later request of the key in the same period is refused; the next period
    starts again from zero (the reset job). With ``written_before_ms`` (the end of a historical
    run), a request whose row is still queued then is not charged: its spend reaches neither
    the logs nor the counters of the run, so the logs alone explain every refusal.
    """

    def __init__(
        self,
        capped: tuple[CappedKey, ...],
        clock: FlushClock,
        written_before_ms: int | None = None,
    ) -> None:
        self.caps = {c.key_index: c for c in capped if c.max_budget is not None}
        self.clock = clock
        self.written_before_ms = written_before_ms
        self._counters: dict[int, tuple[int | None, float]] = {}
        self.rejected_written: dict[int, int] = {}

    def apply(self, batch: Batch) -> Batch:
        """``batch`` with the requests the proxy refuses for budget turned into failure rows."""
        if not self.caps or not batch_len(batch):
            return batch
        key, start_ms, spend = batch["key"], batch["start_ms"], batch["spend"]
        mine = np.flatnonzero(np.isin(key, list(self.caps)))
        if not len(mine):
            return batch
        mine = mine[np.argsort(start_ms[mine], kind="stable")]
        charged = np.ones(len(mine), dtype=bool)
        if self.written_before_ms is not None:
            flush = self.clock.flush_time(batch["instance"][mine], batch["end_ms"][mine])
            charged = flush < self.written_before_ms
        reject = np.zeros(batch_len(batch), dtype=bool)
        for k, cap in self.caps.items():
            of_key = key[mine] == k
            rows, counts = mine[of_key], charged[of_key]
            labels = period_labels(start_ms[rows] // HOUR_MS, cap.budget_duration)
            label, spent = self._counters.get(k, (None, 0.0))
            for row, period, counted in zip(
                rows.tolist(), labels.tolist(), counts.tolist(), strict=True
            ):
                if period != label:
                    label, spent = period, 0.0
                if spent >= cap.max_budget:
                    reject[row] = True
                elif counted:
                    spent += float(spend[row])
            self._counters[k] = (label, spent)
        if not reject.any():
            return batch
        out = dict(batch)
        out["failure_kind"] = np.where(reject, BUDGET_FAILURE_KIND, batch["failure_kind"])
        out["cache_hit"] = batch["cache_hit"] & ~reject
        out["spend"] = np.where(reject, 0.0, spend)
        for name in ("prompt_tokens", "completion_tokens"):
            out[name] = np.where(reject, 0, batch[name])
        for name in ("end_ms", "completion_start_ms"):
            out[name] = np.where(reject, start_ms, batch[name])
        return out

    def count_written(self, batch: Batch) -> None:
        """Count the refused requests among a flushed batch's rows, per key index."""
        if not batch_len(batch):
            return
        refused = batch["failure_kind"] == BUDGET_FAILURE_KIND
        for k, n in zip(*np.unique(batch["key"][refused], return_counts=True), strict=True):
            self.rejected_written[int(k)] = self.rejected_written.get(int(k), 0) + int(n)
