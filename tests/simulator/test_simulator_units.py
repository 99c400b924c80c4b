"""Unit tests of the simulator's pure parts: population, workload, flush order, budgets, rows."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest

from dagster_project.simulator import population as population_module
from dagster_project.simulator.budgets import (
    SpendLedger,
    WindowSpend,
    epoch_ms,
    finalize,
    next_reset,
    period_labels,
    size_limits,
    tags_carried,
    window_spend,
)
from dagster_project.simulator.catalog import FLUSH_INTERVAL_S, FLUSH_JITTER_S, MASTER_KEY
from dagster_project.simulator.population import PopulationSpec, generate_population
from dagster_project.simulator.rows import (
    build_text_plan,
    copy_escape,
    error_log_columns,
    spend_log_columns,
)
from dagster_project.simulator.workload import (
    DAY_MS,
    HOUR_MS,
    FlushClock,
    TrafficStream,
    build_plan,
    concat,
    generate_requests,
    hourly_counts,
    spend_for,
)

END = datetime(2026, 11, 26, 18, 0)
START = END - timedelta(days=14)


def unescape(field: str) -> str:
    """Undo COPY text escaping (the simulator only escapes backslash, tab, newline, CR)."""
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m[1], m[1]), field)


@pytest.fixture(scope="module")
def population():
    return generate_population(7, START, END)


@pytest.fixture(scope="module")
def batch(population):
    """About two weeks of requests, queued and drained in flush order."""
    plan = build_plan(population)
    stream = TrafficStream(FlushClock(7))
    out = []
    for i, (t0, t1, n) in enumerate(hourly_counts(7, epoch_ms(START), epoch_ms(END), 30_000)):
        rng = np.random.default_rng([7, 1, i])
        starts = np.sort(rng.integers(t0, t1, size=n))
        stream.add(generate_requests(rng, plan, starts, plan.active_keys(t0, t1)))
        out.append(stream.drain(t1))
    return concat(out)


def test_population_is_deterministic_per_seed():
    a = generate_population(1, START, END)
    b = generate_population(1, START, END)
    c = generate_population(2, START, END)
    assert a == b
    assert [k.token for k in a.keys] != [k.token for k in c.keys]


def test_population_shape(population):
    spec = PopulationSpec()
    assert len(population.keys) == spec.keys
    assert len(population.teams) == spec.teams
    assert population.deleted_keys, "some keys are deleted"
    for key in population.keys:
        assert key.token == hashlib.sha256(key.raw_key.encode()).hexdigest()
        assert key.raw_key.startswith("sk-")
        assert key.key_name == f"sk-...{key.raw_key[-4:]}"
    budgets = {b.budget_id: b for b in population.budgets}
    assert all(o.budget_id in budgets for o in population.organizations)
    durations = {b.budget_duration for b in population.budgets}
    durations |= {t.budget_duration for t in population.teams}
    durations |= {k.budget_duration for k in population.keys}
    assert {"1d", "7d", "30d", "1mo", "1h", None} <= durations
    user_ids = {u.user_id for u in population.users}
    team_ids = {t.team_id for t in population.teams}
    assert {k.user_id for k in population.keys} - {None} <= user_ids
    assert {k.team_id for k in population.keys} - {None} <= team_ids
    assert {p for k in population.keys for p in [k.profile]} == {"none", "under", "soft", "over"}


def test_requests_are_deterministic_per_seed(population):
    plan = build_plan(population)
    starts = np.arange(epoch_ms(START), epoch_ms(START) + 1000 * 500, 1000)
    active = np.ones(len(population.keys), dtype=bool)
    a = generate_requests(np.random.default_rng(5), plan, starts, active)
    b = generate_requests(np.random.default_rng(5), plan, starts, active)
    c = generate_requests(np.random.default_rng(6), plan, starts, active)
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert not np.array_equal(a["ids"], c["ids"])


def test_diurnal_and_weekly_shape():
    chunks = hourly_counts(3, epoch_ms(START), epoch_ms(END), 200_000)
    assert sum(n for _, _, n in chunks) == 200_000
    by_hour = np.zeros(24)
    by_weekday = np.zeros(7)
    for t0, _, n in chunks:
        by_hour[(t0 % DAY_MS) // HOUR_MS] += n
        by_weekday[(t0 // DAY_MS + 3) % 7] += n
    assert by_hour[13:16].mean() > 4 * by_hour[0:5].mean()
    assert by_weekday[:5].mean() > 2 * by_weekday[5:].mean()


def test_flush_clock_makes_rows_late_but_never_early():
    clock = FlushClock(11)
    end_ms = epoch_ms(START) + np.arange(0, 3 * HOUR_MS, 997)
    instance = np.arange(len(end_ms)) % 3
    flush = clock.flush_time(instance, end_ms)
    lag = flush - end_ms
    assert (lag >= 0).all()
    normal = (FLUSH_INTERVAL_S + FLUSH_JITTER_S) * 1000
    assert np.median(lag) < normal
    assert (lag > normal).any(), "failed flushes and outages delay some rows further"
    assert np.array_equal(flush, FlushClock(11).flush_time(instance, end_ms))


def test_drained_rows_are_in_flush_order_and_out_of_start_order(batch):
    assert (np.diff(batch["flush_ms"]) >= 0).all()
    assert (batch["flush_ms"] >= batch["end_ms"]).all()
    assert (np.diff(batch["start_ms"]) < 0).sum() > 100, "rows arrive out of startTime order"


def test_price_math(population, batch):
    plan = build_plan(population)
    success = (batch["failure_kind"] < 0) & ~batch["cache_hit"]
    expected = spend_for(plan, batch["model"], batch["prompt_tokens"], batch["completion_tokens"])
    assert np.allclose(batch["spend"][success], expected[success])
    gpt4o = np.array([d.spec.model == "gpt-4o" for d in population.deployments])
    assert spend_for(plan, np.flatnonzero(gpt4o)[:1], np.array([1000]), np.array([100]))[
        0
    ] == pytest.approx(1000 * 2.5e-6 + 100 * 10e-6)
    assert (batch["spend"][~success] == 0).all()
    failed = batch["failure_kind"] >= 0
    assert failed.any()
    assert batch["cache_hit"].any()
    assert (batch["prompt_tokens"][failed] == 0).all()
    assert (batch["start_ms"][failed] == batch["end_ms"][failed]).all()
    median_cost = np.median(batch["spend"][success])
    assert 1e-5 < median_cost < 0.05


def test_rendered_rows_have_upstream_shapes(population, batch):
    text = build_text_plan(population)
    cols = spend_log_columns(batch, text, stamp_created=True)
    tags = [json.loads(unescape(t)) for t in cols["request_tags"]]
    assert all(isinstance(t, list) and all(isinstance(x, str) for x in t) for t in tags)
    assert any(t == [] for t in tags)
    assert any(len(t) >= 2 for t in tags)
    assert sum(any(x.startswith("User-Agent: ") for x in t) for t in tags) > len(tags) / 2

    metas = [json.loads(unescape(m)) for m in cols["metadata"]]
    required = {
        "user_api_key_alias",
        "user_api_key_team_id",
        "user_api_key_team_alias",
        "user_api_key_org_id",
        "user_api_key_user_id",
        "user_api_key_user_email",
        "status",
    }
    assert all(required <= set(m) for m in metas)
    ok = [m for m, s in zip(metas, cols["status"], strict=True) if s == "success"]
    assert all(m["model_map_information"]["model_map_key"] for m in ok)
    assert all("additional_usage_values" in m for m in ok)
    failed = [m for m, s in zip(metas, cols["status"], strict=True) if s == "failure"]
    assert failed
    assert all(m["error_information"]["error_class"] for m in failed)

    hits = [r for r, h in zip(cols["request_id"], cols["cache_hit"], strict=True) if h == "True"]
    assert hits
    assert all(re.search(r"_cache_hit\d+\.\d+$", r) for r in hits)
    assert len(set(cols["request_id"])) == len(cols["request_id"])
    assert "" in cols["team_id"]
    assert "" in cols["end_user"]
    assert "" in cols["organization_id"]
    assert MASTER_KEY in cols["api_key"]
    assert "" in cols["api_key"]
    assert cols["created_at"][0] >= cols["endTime"][0]

    errors = error_log_columns(batch, text)
    assert len(errors["request_id"]) == sum(s == "failure" for s in cols["status"])
    assert set(errors["status_code"]) >= {"429", "500", "401"}


def test_copy_escape():
    assert copy_escape('a\\b\tc\nd"') == 'a\\\\b\\tc\\nd"'
    assert unescape(copy_escape('x\\"y\n')) == 'x\\"y\n'


def test_budget_windows_follow_calendar_alignment():
    at = datetime(2026, 11, 26, 18, 30)  # a Thursday
    assert next_reset(at, "1h") == datetime(2026, 11, 26, 19)
    assert next_reset(at, "1d") == datetime(2026, 11, 27)
    assert next_reset(at, "7d") == datetime(2026, 11, 30)  # next Monday
    assert next_reset(at, "30d") == next_reset(at, "1mo") == datetime(2026, 12, 1)
    assert next_reset(datetime(2026, 12, 5), "1mo") == datetime(2027, 1, 1)
    assert next_reset(at, None) is None
    monday = epoch_ms(datetime(2026, 11, 23)) // HOUR_MS
    sunday = monday - 1
    labels = period_labels(np.array([sunday, monday, monday + 24 * 6 + 23]), "7d")
    assert labels[0] != labels[1] == labels[2]
    with pytest.raises(ValueError, match="budget_duration"):
        period_labels(np.array([1]), "2w")


def test_window_spend_current_peak_total():
    first = epoch_ms(datetime(2026, 11, 24)) // HOUR_MS
    hours = first + np.arange(72)
    series = np.zeros(72)
    series[5] = 3.0  # day 1
    series[30] = 1.0  # day 2
    series[50] = 2.0  # day 3, before 'now'
    series[60] = 9.0  # day 3, after 'now': not in the current window yet
    ws = window_spend(series, hours, "1d", int(first + 55))
    assert ws == WindowSpend(current=2.0, peak=11.0, total=15.0)


@pytest.mark.parametrize(
    ("profile", "crosses_soft", "crosses_max"),
    [("under", False, False), ("soft", True, False), ("over", True, True)],
)
def test_size_limits_profiles(profile, crosses_soft, crosses_max):
    spend = WindowSpend(current=8.0, peak=10.0, total=50.0)
    soft, max_ = size_limits(profile, spend)
    assert (spend.current > soft) is crosses_soft
    assert (spend.current > max_) is crosses_max
    assert max_ > soft
    if not crosses_max:
        assert max_ > spend.peak
    assert size_limits("none", spend) == (None, None)


def test_finalize_sizes_budgets_and_counters(population, batch):
    ledger = SpendLedger.empty(START, END, len(population.keys), len(population.end_users))
    ledger.add(batch["key"], batch["end_user"], batch["start_ms"], batch["spend"])
    final = finalize(population, ledger)
    assert final == finalize(population, ledger)
    live = [k for k in final.keys if k.deleted_at is None and k.budget_duration]
    over = [k for k in live if k.profile == "over" and k.period_spend > 0]
    assert any(k.period_spend > k.max_budget for k in over)
    under = [k for k in live if k.profile == "under"]
    assert under
    assert all(k.period_spend < k.max_budget for k in under)
    assert any(t.soft_budget is not None for t in final.teams)
    drifted = [k for k in final.keys if ("key", k.token) in final.drifted]
    assert drifted
    assert all(k.spend < k.period_spend for k in drifted)
    steady = [k for k in final.keys if ("key", k.token) not in final.drifted]
    assert all(k.spend == k.period_spend for k in steady)
    assert sum(o.period_spend for o in final.organizations) <= float(batch["spend"].sum()) + 1e-6
    assert any(b.max_budget is not None for b in final.budgets if b.owner == "end_user_tier")


def test_tags_carried_match_the_rendered_request_tags(population, batch):
    """The ledger books each tag on exactly the rows whose request_tags carry it."""
    names = [t.tag_name for t in population.tags]
    carried = tags_carried(population, batch["key"], batch["tag_variant"], batch["extra_tag"])
    text = build_text_plan(population)
    rendered = [
        set(json.loads(unescape(t)))
        for t in spend_log_columns(batch, text, stamp_created=True)["request_tags"]
    ]
    expected = np.array([[name in tags for name in names] for tags in rendered], dtype=bool)
    assert carried.shape == expected.shape
    assert (carried == expected).all()
    assert carried.all(axis=1).sum() < carried.any(axis=1).sum()  # some rows carry several


def test_tag_budgets_are_sized_from_full_cost_per_tag(population, batch):
    assert [t.tag_name for t in population.tags] == [
        "prod",
        "staging",
        "feature:summarize",
        "feature:search",
    ]
    budget_ids = {b.budget_id for b in population.budgets if b.owner == "tag"}
    assert {t.budget_id for t in population.tags} - {None} == budget_ids
    assert any(t.budget_id is None for t in population.tags)
    ledger = SpendLedger.empty(
        START, END, len(population.keys), len(population.end_users), len(population.tags)
    )
    ledger.add(batch["key"], batch["end_user"], batch["start_ms"], batch["spend"])
    carried = tags_carried(population, batch["key"], batch["tag_variant"], batch["extra_tag"])
    ledger.add_tags(carried, batch["start_ms"], batch["spend"])
    # Full cost: a row with two tags counts for both, so the tags may add up to more than the spend.
    for j in range(len(population.tags)):
        assert ledger.tag_hourly[j].sum() == pytest.approx(batch["spend"][carried[:, j]].sum())
    final = finalize(population, ledger)
    budgets = {b.budget_id: b for b in final.budgets}
    prod = next(t for t in final.tags if t.tag_name == "prod")
    peak = window_spend(ledger.tag_hourly[0], ledger.hours, "1d", int(ledger.hours[-1])).peak
    assert peak > budgets[prod.budget_id].max_budget  # the demo crosses it in some day
    assert budgets[prod.budget_id].soft_budget < budgets[prod.budget_id].max_budget
    assert budgets[prod.budget_id].budget_duration == "1d"
    unbudgeted = next(t for t in final.tags if t.budget_id is None)
    assert unbudgeted.period_spend == pytest.approx(ledger.tag_hourly[3].sum())


def test_projects_leave_the_rest_of_a_seed_unchanged(population, monkeypatch):
    """Projects draw from a generator of their own: without them, every other entity (and every
    other budget row) of the seed is the same; only the keys' project_id differs."""
    monkeypatch.setattr(population_module, "PROJECT_BUDGETS", ())
    without = generate_population(7, START, END)
    assert without.projects == ()
    assert [replace(k, project_id=None) for k in population.keys] == list(without.keys)
    assert [b for b in population.budgets if b.owner != "project"] == list(without.budgets)
    assert population.tags == without.tags
    assert population.end_users == without.end_users


def test_project_budgets_are_sized_from_their_keys_spend(population, batch):
    assert [p.project_alias for p in population.projects] == [
        "checkout-assistant",
        "support-bot",
        "data-pipeline",
        "sandbox",
    ]
    budget_ids = {b.budget_id for b in population.budgets if b.owner == "project"}
    assert {p.budget_id for p in population.projects} - {None} == budget_ids
    teams = {p.project_id: p.team_id for p in population.projects}
    for project in population.projects:
        mine = [k for k in population.keys if k.project_id == project.project_id]
        assert mine, project.project_alias
        assert {k.team_id for k in mine} == {project.team_id}
    assert any(k.project_id is None for k in population.keys)
    assert all(k.project_id is None or k.project_id in teams for k in population.keys)
    ledger = SpendLedger.empty(START, END, len(population.keys), len(population.end_users))
    ledger.add(batch["key"], batch["end_user"], batch["start_ms"], batch["spend"])
    final = finalize(population, ledger)
    budgets = {b.budget_id: b for b in final.budgets}
    rows = {p.project_id: [i for i, k in enumerate(population.keys) if k.project_id == p.project_id]
            for p in population.projects}  # fmt: skip
    over = final.projects[0]
    series = ledger.key_hourly[rows[over.project_id]].sum(axis=0)
    peak = window_spend(series, ledger.hours, "1d", int(ledger.hours[-1])).peak
    assert peak > budgets[over.budget_id].max_budget  # the demo crosses it in some day
    assert budgets[over.budget_id].soft_budget < budgets[over.budget_id].max_budget
    assert budgets[over.budget_id].budget_duration == "1d"
    unbudgeted = next(p for p in final.projects if p.budget_id is None)
    assert unbudgeted.period_spend == pytest.approx(
        ledger.key_hourly[rows[unbudgeted.project_id]].sum()
    )


def test_key_rotations_are_drawn_for_a_share_of_the_live_keys(population):
    """About a tenth of the live keys (never a deleted one) are rotated inside the range, a few
    twice; every evidence kind is present; each rotation links the hash before to the one after."""
    pop = population
    rotated = sorted({r.key_index for r in pop.rotations})
    assert len(rotated) == round(0.1 * len(pop.live_keys))
    assert all(pop.keys[i].deleted_at is None for i in rotated)
    assert any(len(pop.rotations_of(i)) == 2 for i in rotated), "a chain old1 -> old2 -> live"
    assert {r.evidence for r in pop.rotations} == set(population_module.ROTATION_EVIDENCE)
    graces = {g for _, g in population_module.GRACE_PERIODS}
    live_tokens = {k.token for k in pop.keys}
    for i in rotated:
        key, rotations, hashes = pop.keys[i], pop.rotations_of(i), pop.key_hashes(i)
        assert hashes[-1] == key.token
        assert len(set(hashes)) == len(hashes)
        assert not set(hashes[:-1]) & live_tokens
        times = [r.rotated_at for r in rotations]
        assert times == sorted(set(times))
        assert times[0] >= START
        assert times[-1] < END
        assert times[0] >= key.created_at + timedelta(hours=1)
        for j, r in enumerate(rotations):
            assert (r.number, r.old_token, r.new_token) == (j + 1, hashes[j], hashes[j + 1])
            assert re.fullmatch(r"sk-\.\.\.\w{4}", r.old_key_name)
            if r.evidence == "deprecated_token":
                assert r.revoke_at > END
                assert r.revoke_at - r.rotated_at in graces
            else:
                assert r.revoke_at is None
    assert generate_population(7, START, END).rotations == pop.rotations


def test_key_rotations_leave_the_rest_of_a_seed_unchanged(population, monkeypatch):
    """Rotations draw from a generator of their own: without them the seed is the same."""
    monkeypatch.setattr(population_module, "_rotations", lambda *_args: [])
    assert replace(population, rotations=()) == generate_population(7, START, END)


@pytest.mark.parametrize(("keys", "rotated"), [(9, 0), (10, 1)])
def test_few_keys_get_at_least_one_rotation_from_ten(keys, rotated):
    pop = generate_population(2, START, END, PopulationSpec(keys=keys))
    assert len({r.key_index for r in pop.rotations}) == rotated


def test_logs_carry_the_hash_a_key_had_when_the_request_started(population, batch):
    """Strictly by time: before a rotation the old hash (also in metadata.user_api_key), from it
    on the new one; keys never rotated always carry their token."""
    text = build_text_plan(population)
    cols = spend_log_columns(batch, text, stamp_created=True)
    api_key = np.array(cols["api_key"])
    metas = [json.loads(unescape(m))["user_api_key"] or "" for m in cols["metadata"]]
    assert metas == cols["api_key"]
    old_rows = 0
    for i, key in enumerate(population.keys):
        mine = batch["key"] == i
        bounds = [epoch_ms(r.rotated_at) for r in population.rotations_of(i)]
        era = np.searchsorted(np.array(bounds, dtype=np.int64), batch["start_ms"][mine], "right")
        expected = np.array(population.key_hashes(i))[era]
        assert (api_key[mine] == expected).all(), key.key_alias
        old_rows += int((era < len(bounds)).sum())
    assert old_rows > 0


def test_rotation_copies_keep_the_counter_as_of_the_rotation(population, batch):
    """The live counter follows the key across its hashes (the ledger is by key index); the old
    row's copy holds the spend of its window before the rotation and that window's reset."""
    ledger = SpendLedger.empty(START, END, len(population.keys), len(population.end_users))
    ledger.add(batch["key"], batch["end_user"], batch["start_ms"], batch["spend"])
    final = finalize(population, ledger)
    assert [replace(r, spend=0.0, budget_reset_at=None) for r in final.rotations] == list(
        population.rotations
    )
    for r in final.rotations:
        key = final.keys[r.key_index]
        rotation_hour = epoch_ms(r.rotated_at) // HOUR_MS
        before = ledger.key_hourly[r.key_index][ledger.hours < rotation_hour]
        assert 0 <= r.spend <= before.sum() + 1e-9
        if key.budget_duration is None:
            assert r.spend == pytest.approx(before.sum())
        assert r.budget_reset_at == next_reset(r.rotated_at, key.budget_duration)
    rotated = {r.key_index for r in final.rotations}
    steady = [i for i in rotated if ("key", final.keys[i].token) not in final.drifted]
    for i in steady:
        key = final.keys[i]
        if key.budget_duration is None:
            assert key.spend == pytest.approx(ledger.key_hourly[i].sum())
