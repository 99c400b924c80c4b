"""The proxy's daily aggregate tables, filled from the same payload as each spend-log row.

Upstream queues one increment per request for each daily table (DailyUserSpend, DailyTeamSpend,
DailyOrganizationSpend, DailyEndUserSpend, DailyTagSpend) keyed by entity, UTC date of
``startTime``, key, model and provider, and upserts ``spend = spend + delta`` (and every counter)
at each flush. The rules (budget-features.md, "Daily aggregate tables"): user rows for every
request (an empty user included), team and organization rows only with a team or organization,
end-user rows only with a non-empty end user, and one row per tag in ``request_tags`` with the
request's full cost. ``created_at`` is the row's first flush, ``updated_at`` its last.

:class:`DailyDifferences` makes the tables differ from the spend logs the way real deployments
do, for the warehouse's reconciliation (``fct_daily_spend_reconciliation``): spend logs deleted
beyond a retention horizon, a stretch with spend logs disabled, and one lost flush batch of
daily increments. Tag fan-out needs no setting: multi-tag requests always carry it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from dagster_project.lib.sql import quote_ident, quoted_table
from dagster_project.simulator.budgets import epoch_ms
from dagster_project.simulator.rows import EXTRA_TAGS, TextPlan
from dagster_project.simulator.workload import DAY_MS, Batch, batch_len, take
from dagster_project.simulator.writer import TableShape

DAILY_TABLES: dict[str, str] = {
    "user": "DailyUserSpend",
    "team": "DailyTeamSpend",
    "organization": "DailyOrganizationSpend",
    "end_user": "DailyEndUserSpend",
    "tag": "DailyTagSpend",
}
ENTITY_COLUMNS: dict[str, str] = {
    "user": "user_id",
    "team": "team_id",
    "organization": "organization_id",
    "end_user": "end_user_id",
    "tag": "tag",
}


@dataclass(frozen=True)
class DailyDifferences:
    """Where the spend logs and the daily tables part, as on a real proxy (naive UTC instants).

    ``retention_until``: spend logs that started before it are deleted after the load (the
    proxy's ``maximum_spend_logs_retention_period`` cleanup); their daily rows stay.
    ``logs_disabled``: requests that started in ``[start, end)`` get no spend log
    (``disable_spend_logs``) but count in the daily tables. ``lost_flushes``: the flushes of
    proxy instance 0 due in ``[start, end)`` lose their daily increments (failed commits of the
    daily tables, BerriAI/litellm#35531); their spend logs are written.
    """

    retention_until: datetime | None = None
    logs_disabled: tuple[datetime, datetime] | None = None
    lost_flushes: tuple[datetime, datetime] | None = None

    @classmethod
    def spread_over(cls, start: datetime, end: datetime) -> DailyDifferences:
        """One of each across ``[start, end)``: retention for the first tenth, spend logs
        disabled for 30 hours from the middle, and an hour of lost flushes at three quarters."""
        span = end - start
        middle = start + span / 2
        lost = start + span * 3 / 4
        return cls(
            retention_until=start + span / 10,
            logs_disabled=(middle, middle + timedelta(hours=30)),
            lost_flushes=(lost, lost + timedelta(hours=1)),
        )

    def is_logged(self, start_ms: np.ndarray) -> np.ndarray:
        """Which requests get a spend log written (before the retention cleanup)."""
        logged = np.ones(len(start_ms), dtype=bool)
        if self.logs_disabled is not None:
            lo, hi = (epoch_ms(t) for t in self.logs_disabled)
            logged &= (start_ms < lo) | (start_ms >= hi)
        return logged

    def is_counted(self, batch: Batch) -> np.ndarray:
        """Which requests' daily increments reach the database."""
        counted = np.ones(batch_len(batch), dtype=bool)
        if self.lost_flushes is not None:
            lo, hi = (epoch_ms(t) for t in self.lost_flushes)
            flush = batch["flush_ms"]
            counted &= ~((batch["instance"] == 0) & (flush >= lo) & (flush < hi))
        return counted


class DailyAggregates:
    """Daily-table rows accumulated over flushed batches, written once at the end."""

    def __init__(self, text: TextPlan, seed: int, end: datetime) -> None:
        self.text = text
        self.namespace = uuid.uuid5(uuid.NAMESPACE_OID, f"spendwh-daily-{seed}-{end.isoformat()}")
        n_extra = len(EXTRA_TAGS)
        # Tags of each key's request_tags variants, parsed once (as the proxy json.loads them).
        self.tag_lists = [
            [[t for t in json.loads(v) if isinstance(t, str)] for v in variants]
            for variants in text.key_tags
        ]
        self.n_extra = n_extra
        # (entity kind, entity id, date, api_key, model, provider) ->
        # [model_group, spend, prompt, completion, requests, successes, failures, first, last]
        self.rows: dict[tuple[str, str, str, str, str, str], list] = {}

    def add(self, batch: Batch) -> None:
        """Count a flushed batch's requests (already filtered to what reaches the database)."""
        if not batch_len(batch):
            return
        n_keys = len(self.text.key_token)
        ki = np.where(batch["key"] >= 0, batch["key"], n_keys + batch["key"])
        tv = batch["tag_variant"]
        tag_idx = np.where(tv == 0, 0, np.where(tv == 1, 1, 2 + batch["extra_tag"] % self.n_extra))
        # outcome: 0 success, 1 failed call, 2 refused at authentication (no key, over budget)
        fk = batch["failure_kind"]
        at_auth = np.array(self.text.failure_at_auth, dtype=bool)[np.maximum(fk, 0)]
        outcome = np.where(fk < 0, 0, np.where(at_auth, 2, 1)).astype(np.int64)
        day = batch["start_ms"] // DAY_MS
        era = self.text.eras(batch["key"], batch["start_ms"])  # which hash a rotated key had
        grain = np.stack(
            [ki, batch["model"], day, batch["end_user"], tag_idx, outcome, era], axis=1
        )
        groups, inverse = np.unique(grain, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        spend = np.bincount(inverse, weights=batch["spend"])
        prompt = np.bincount(inverse, weights=batch["prompt_tokens"]).astype(np.int64)
        completion = np.bincount(inverse, weights=batch["completion_tokens"]).astype(np.int64)
        count = np.bincount(inverse).astype(np.int64)
        first = np.full(len(groups), np.iinfo(np.int64).max)
        np.minimum.at(first, inverse, batch["flush_ms"])
        last = np.full(len(groups), np.iinfo(np.int64).min)
        np.maximum.at(last, inverse, batch["flush_ms"])
        for g, (k, m, d, eu, ti, out, e) in enumerate(groups.tolist()):
            values = (
                float(spend[g]),
                int(prompt[g]),
                int(completion[g]),
                int(count[g]),
                int(first[g]),
                int(last[g]),
            )
            for kind, ident in self._entities(k, eu, ti):
                self._add(kind, ident, (k, e), m, d, out, values)

    def _entities(self, k: int, eu: int, ti: int) -> Iterator[tuple[str, str]]:
        text = self.text
        yield "user", text.key_user[k]
        if text.key_team[k]:
            yield "team", text.key_team[k]
        if text.key_org[k]:
            yield "organization", text.key_org[k]
        if eu >= 0 and text.end_user[eu]:
            yield "end_user", text.end_user[eu]
        for tag in self.tag_lists[k][ti]:
            yield "tag", tag

    def _add(
        self,
        kind: str,
        ident: str,
        key_era: tuple[int, int],
        m: int,
        day: int,
        outcome: int,
        values: tuple[float, int, int, int, int, int],
    ) -> None:
        text = self.text
        k, era = key_era  # key index (as in TextPlan) and the era of its hash
        failed = outcome != 0
        auth = outcome == 2  # refused at authentication: the row's model is the group
        model = text.model_group[m] if auth else text.model_name[m]
        provider = "" if auth else text.provider[m]
        date = datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()
        key = (kind, ident, date, text.key_hashes[k][era], model, provider)
        spend, prompt, completion, count, first, last = values
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [text.model_group[m], 0.0, 0, 0, 0, 0, 0, first, last]
        row[1] += spend
        row[2] += prompt
        row[3] += completion
        row[4] += count
        row[5 if not failed else 6] += count
        row[7] = min(row[7], first)
        row[8] = max(row[8], last)

    def write(self, conn: psycopg.Connection, prefix: str, shapes: dict[str, TableShape]) -> int:
        """COPY the rows into the daily tables this schema has; returns the rows written."""
        written = 0
        by_kind: dict[str, list[tuple]] = {kind: [] for kind in DAILY_TABLES}
        for (kind, ident, date, api_key, model, provider), row in self.rows.items():
            by_kind[kind].append((ident, date, api_key, model, provider, *row))
        for kind, rows in by_kind.items():
            shape = shapes.get(DAILY_TABLES[kind])
            if shape is None or not rows:
                continue
            names = [
                "id",
                ENTITY_COLUMNS[kind],
                "date",
                "api_key",
                "model",
                "custom_llm_provider",
                "model_group",
                "spend",
                "prompt_tokens",
                "completion_tokens",
                "api_requests",
                "successful_requests",
                "failed_requests",
                "created_at",
                "updated_at",
            ]
            columns = shape.writable(names)
            target = quoted_table(prefix, shape.name)
            column_list = ", ".join(quote_ident(c) for c in columns)
            with conn.cursor().copy(f"COPY {target} ({column_list}) FROM STDIN") as copy:
                for ident, date, api_key, model, provider, *values in rows:
                    group, spend, prompt, completion, count, ok, bad, first, last = values
                    record = {
                        "id": str(
                            uuid.uuid5(
                                self.namespace,
                                f"{kind}|{ident}|{date}|{api_key}|{model}|{provider}",
                            )
                        ),
                        ENTITY_COLUMNS[kind]: ident,
                        "date": date,
                        "api_key": api_key,
                        "model": model,
                        "custom_llm_provider": provider,
                        "model_group": group,
                        "spend": spend,
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "api_requests": count,
                        "successful_requests": ok,
                        "failed_requests": bad,
                        "created_at": _naive(first),
                        "updated_at": _naive(last),
                    }
                    copy.write_row([record[c] for c in columns])
            written += len(rows)
        return written


def _naive(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def split_logged(batch: Batch, differences: DailyDifferences | None) -> Batch:
    """The rows of a flushed batch that get a spend log."""
    if differences is None or not batch_len(batch):
        return batch
    return take(batch, differences.is_logged(batch["start_ms"]))


def counted(batch: Batch, differences: DailyDifferences | None) -> Batch:
    """The rows of a flushed batch whose daily increments reach the database."""
    if differences is None or not batch_len(batch):
        return batch
    return take(batch, differences.is_counted(batch))


def apply_retention(
    conn: psycopg.Connection, prefix: str, differences: DailyDifferences | None
) -> int:
    """Delete the spend logs older than the retention horizon, like the proxy's cleanup job."""
    if differences is None or differences.retention_until is None:
        return 0
    cursor = conn.execute(
        f'DELETE FROM {quoted_table(prefix, "SpendLogs")} WHERE "startTime" < %s',
        (differences.retention_until,),
    )
    return cursor.rowcount


__all__ = [
    "DAILY_TABLES",
    "DailyAggregates",
    "DailyDifferences",
    "apply_retention",
    "counted",
    "split_logged",
]
