"""Pure alert logic: identity, decisions, the projected rule, messages, payloads, redaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from dagster_project.defs.pipeline.schedules import failure_reason
from dagster_project.lib.alerts.messages import (
    budget_label,
    entity_label,
    health_message,
    json_payload,
    redact,
    slack_payload,
)
from dagster_project.lib.alerts.records import (
    CONTRACT_COLUMNS,
    BudgetCrossing,
    BudgetPeriod,
    alert_id,
)
from dagster_project.lib.alerts.rules import (
    crossing_alert,
    decide_alerts,
    failed_check_problems,
    projected_alert,
)
from tests.alerts.designed import (
    EXPECTED,
    NOW,
    alert_signature,
    crossing,
    designed_marts,
    period,
    ts,
)

ID_ARGS = {
    "entity_type": "key",
    "entity_id": "sk-a",
    "budget_source": "limit from the key's budget b-1",
    "budget_id": "b-1",
    "period_start": datetime(2026, 11, 1),
    "period_end": datetime(2026, 12, 1),
    "alert_type": "threshold",
    "threshold": Decimal(85),
}


def _joined(crossings, periods):
    by_id = {p["budget_period_id"]: p for p in periods}
    return [
        {
            **c,
            "budget_source": by_id[c["budget_period_id"]]["budget_source"],
            "budget_id": by_id[c["budget_period_id"]]["budget_id"],
        }
        for c in crossings
    ]


def _decide(crossings, periods, now):
    return decide_alerts(
        [BudgetCrossing.from_row(row) for row in crossings],
        [BudgetPeriod.from_row(row) for row in periods],
        now,
    )


def _period(row):
    return BudgetPeriod.from_row(row)


def test_alert_id_is_stable_across_representations():
    same = [
        alert_id(**ID_ARGS),
        alert_id(**{**ID_ARGS, "threshold": Decimal("85.0000")}),
        alert_id(**{**ID_ARGS, "period_start": datetime(2026, 11, 1, tzinfo=UTC)}),
    ]
    assert len(set(same)) == 1
    # A fixed value: changing the recipe would re-open every alert already delivered.
    assert same[0] == alert_id(**ID_ARGS)
    assert len(same[0]) == 32


@pytest.mark.parametrize(
    "change",
    [
        {"entity_type": "team"},
        {"entity_id": "sk-b"},
        {"budget_source": "entity"},
        {"budget_id": "b-2"},
        {"period_start": datetime(2026, 12, 1)},
        {"period_end": None},  # open-ended
        {"alert_type": "soft_budget", "threshold": None},
        {"threshold": Decimal(95)},
    ],
)
def test_alert_id_changes_with_each_identity_part(change):
    assert alert_id(**{**ID_ARGS, **change}) != alert_id(**ID_ARGS)


def test_open_ended_alert_id_ignores_the_period_start():
    # The open-ended period starts at the first request known, which a late row can move.
    open_ended = {**ID_ARGS, "period_end": None}
    moved = {**open_ended, "period_start": datetime(2026, 10, 3)}
    assert alert_id(**open_ended) == alert_id(**moved)


def test_alert_id_rejects_unknown_type():
    with pytest.raises(ValueError, match="unknown alert_type"):
        alert_id(**{**ID_ARGS, "alert_type": "budget_crossed"})


def test_designed_marts_give_exactly_the_expected_alerts():
    periods, crossings = designed_marts()
    current = [p for p in periods if p["is_current_period"]]
    alerts = _decide(_joined(crossings, periods), current, NOW)
    assert {alert_signature(a) for a in alerts} == EXPECTED
    assert len(alerts) == len(EXPECTED)


def test_deciding_twice_gives_identical_alerts():
    periods, crossings = designed_marts()
    current = [p for p in periods if p["is_current_period"]]
    first = _decide(_joined(crossings, periods), current, NOW)
    second = _decide(_joined(crossings, periods), current, NOW)
    assert first == second


def _sk_a_november_max_crossing() -> dict:
    """The designed crossing of key sk-a's max budget in November, joined to its budget."""
    periods, crossings = designed_marts()
    [row] = [
        c
        for c in _joined(crossings, periods)
        if c["crossing_type"] == "max_budget"
        and c["entity_id"] == "sk-a"
        and c["period_start"] == ts("2026-11-01 00:00")
    ]
    return row


def test_crossing_alert_fields_and_message():
    row = _sk_a_november_max_crossing()
    alert = crossing_alert(BudgetCrossing.from_row(row), NOW)
    assert alert.threshold_usd == Decimal(100)
    assert alert.period_spend_usd == Decimal("100.4")
    assert alert.breached_at == datetime(2026, 11, 14, 9, 30, tzinfo=UTC)
    assert alert.detected_at == NOW
    assert alert.is_late is False
    assert list(alert.contract_row()) == list(CONTRACT_COLUMNS)
    for part in (
        "prod-app",
        "sk-a",
        "$100.00",
        "$100.40",
        "2026-11-01 00:00 → 2026-12-01",
        "max budget",
        "rejects further requests",
        "limit from the key's budget b-1",
    ):
        assert part in alert.message


@pytest.mark.parametrize(
    ("entity", "alias", "source", "budget_id", "starts", "advice"),
    [
        (
            "tag/prod",
            "prod",
            "tag_budget",
            "b-tag",
            "Tag prod reached its max budget of $20.00",
            "rejects every further request carrying this tag",
        ),
        (
            "project/proj-1",
            "Search",
            "project_budget",
            "b-proj",
            "Project 'Search' (proj-1) reached its max budget of $20.00",
            "rejects every further request made with this project's keys",
        ),
    ],
)
def test_tag_and_project_max_budget_alerts_say_what_the_proxy_rejects(
    entity, alias, source, budget_id, starts, advice
):
    entity_type, entity_id = entity.split("/")
    budget_period = period(
        entity_type=entity_type,
        entity_id=entity_id,
        entity_alias=alias,
        budget_source=source,
        budget_id=budget_id,
        budget_duration="1d",
        period_start=ts("2026-11-20 00:00"),
        period_end=ts("2026-11-21 00:00"),
        is_current_period=True,
        max_budget_usd=Decimal(20),
        period_spend_usd=Decimal("20.5"),
    )
    row = crossing(budget_period, "max_budget", "2026-11-20 09:30", "20.5")
    alert = crossing_alert(BudgetCrossing.from_row(_joined([row], [budget_period])[0]), NOW)
    assert alert.entity_type == entity_type
    assert alert.message.startswith(starts)
    assert f"limit from the {entity_type}'s budget {budget_id}" in alert.message
    assert advice in alert.message


def test_alert_ids_of_budgets_without_a_model_are_unchanged_by_per_model_budgets():
    # The id an alert of ID_ARGS had before per-model budgets existed: the ledger's history
    # must keep matching, or every open breach would be sent again after an upgrade.
    assert alert_id(**ID_ARGS) == "4ee5ca1d09871e44c32482402ada7113"
    assert alert_id(**ID_ARGS, budget_model=None) == alert_id(**ID_ARGS)
    models = {alert_id(**ID_ARGS, budget_model=m) for m in ("gpt-4o", "claude-3", "")}
    assert len(models) == 3
    assert alert_id(**ID_ARGS) not in models
    windows = {alert_id(**ID_ARGS, budget_window=w) for w in ("1d", "30d", "gpt-4o")}
    assert len(windows) == 3
    assert not windows & (models | {alert_id(**ID_ARGS)})


def test_projected_per_model_alert_says_nothing_is_blocked_yet():
    budget_period = period(
        entity_type="key",
        entity_id="sk-m",
        budget_source="key_model_max_budget",
        budget_model="gpt-4o",
        budget_duration="7d",
        period_kind="rolling",
        period_start=ts("2026-11-16 00:00"),
        period_end=ts("2026-11-23 00:00"),
        is_current_period=True,
        max_budget_usd=Decimal(10),
        period_spend_usd=Decimal(6),
        projected_period_spend_usd=Decimal(14),
        projection_basis_days=Decimal(4),
        last_request_at=ts("2026-11-20 11:00"),
    )
    alert = projected_alert(_period(budget_period), NOW)
    assert alert is not None
    assert alert.budget_model == "gpt-4o"
    assert "above its gpt-4o budget of $10.00" in alert.message
    assert "Nothing is blocked yet: reduce gpt-4o usage" in alert.message


def test_multi_window_alert_names_its_window():
    budget_period = period(
        entity_type="team",
        entity_id="t-1",
        entity_alias="search",
        budget_source="team_budget_limits",
        budget_window="1d",
        budget_duration="1d",
        period_start=ts("2026-11-30 00:00"),
        period_end=ts("2026-12-01 00:00"),
        is_current_period=True,
        max_budget_usd=Decimal(5),
        period_spend_usd=Decimal("5.5"),
    )
    row = crossing(budget_period, "max_budget", "2026-11-30 18:00", "5.5")
    joined = {**row, "budget_source": "team_budget_limits", "budget_id": None}
    alert = crossing_alert(BudgetCrossing.from_row({**joined, "budget_window": "1d"}), NOW)
    assert alert.budget_window == "1d"
    assert "limit from the team's budget_limits, window 1d" in alert.message
    assert "rejects further requests for this team" in alert.message
    assert alert.alert_id != crossing_alert(BudgetCrossing.from_row(joined), NOW).alert_id
    assert json_payload(alert)["budget_window"] == "1d"


@pytest.mark.parametrize(
    ("crossing_type", "is_current", "says"),
    [
        ("max_budget", True, "rejects further gpt-4o requests of this key (other models"),
        ("threshold", True, "starts rejecting gpt-4o requests of this key"),
        ("max_budget", False, "The window has ended: nothing is blocked now"),
    ],
)
def test_per_model_budget_alert_names_the_model_and_its_rolling_window(
    crossing_type, is_current, says
):
    start, end = (
        (ts("2026-11-29 14:03"), ts("2026-12-06 14:03"))
        if is_current
        else (ts("2026-11-10 08:00"), ts("2026-11-17 08:00"))
    )
    budget_period = period(
        entity_type="key",
        entity_id="sk-m",
        entity_alias="batch-key",
        budget_source="team_model_max_budget",
        budget_model="gpt-4o",
        budget_duration="7d",
        period_kind="rolling",
        period_start=start,
        period_end=end,
        is_current_period=is_current,
        max_budget_usd=Decimal(10),
        period_spend_usd=Decimal("10.25"),
    )
    row = crossing(
        budget_period,
        crossing_type,
        "2026-11-30 10:00" if is_current else "2026-11-12 10:00",
        "10.25",
        **({"threshold_pct": 85} if crossing_type == "threshold" else {}),
    )
    joined = {**row, "budget_source": "team_model_max_budget", "budget_id": None}
    alert = crossing_alert(BudgetCrossing.from_row({**joined, "budget_model": "gpt-4o"}), NOW)
    assert alert.budget_model == "gpt-4o"
    assert "limit from the team's model_max_budget (for each of its keys) for gpt-4o" in (
        alert.message
    )
    assert says in alert.message
    if crossing_type == "max_budget":
        assert "reached its gpt-4o budget of $10.00" in alert.message
    else:
        assert "of its gpt-4o budget ($8.50)" in alert.message
    unscoped = crossing_alert(BudgetCrossing.from_row(joined), NOW)
    assert unscoped.alert_id != alert.alert_id  # one alert per model, none shared
    assert json_payload(alert)["budget_model"] == "gpt-4o"
    fields = slack_payload(alert)["blocks"][2]["fields"]
    assert {"type": "mrkdwn", "text": "*Model*\ngpt-4o"} in fields


def test_an_alert_says_when_its_limit_changed_inside_the_period():
    row = _sk_a_november_max_crossing()
    changed = crossing_alert(
        BudgetCrossing.from_row({**row, "limit_changed_at": ts("2026-11-10 08:30")}), NOW
    )
    assert "The limit changed on 2026-11-10 08:30 UTC inside this period" in changed.message
    unchanged = crossing_alert(BudgetCrossing.from_row(row), NOW)
    assert "limit changed" not in unchanged.message
    assert changed.alert_id == unchanged.alert_id  # a limit edit does not make a new alert


def test_crossing_in_a_closed_period_is_late():
    periods, crossings = designed_marts()
    row = next(c for c in _joined(crossings, periods) if c["period_end"] == ts("2026-11-01"))
    alert = crossing_alert(BudgetCrossing.from_row(row), NOW)
    assert alert.is_late is True
    assert "Detected late" in alert.message
    assert "The period has ended" in alert.message
    assert "rejects" not in alert.message


def test_crossing_with_unknown_type_is_rejected():
    periods, _ = designed_marts()
    row = crossing(periods[0], "max_budget", "2026-11-14 09:30", "100")
    row.update(crossing_type="budget_crossed", budget_source="entity", budget_id="x")
    with pytest.raises(ValueError, match="budget_crossed"):
        crossing_alert(BudgetCrossing.from_row(row), NOW)


# --- the projected rule ----------------------------------------------------------------------

BASE = period(
    entity_type="team",
    entity_id="t",
    entity_alias="T",
    budget_id="t",
    period_start=ts("2026-11-01 00:00"),
    period_end=ts("2026-12-01 00:00"),
    is_current_period=True,
    max_budget_usd=Decimal(100),
    period_spend_usd=Decimal(60),
    projected_period_spend_usd=Decimal(130),
    projection_basis_days=10,
    last_request_at=ts("2026-11-20 11:00"),
)


@pytest.mark.parametrize(
    ("change", "fires"),
    [
        ({}, True),
        ({"projected_period_spend_usd": Decimal(100)}, False),  # reaching is not exceeding
        ({"projected_period_spend_usd": None}, False),
        ({"projection_basis_days": 2}, False),  # too little history
        ({"projection_basis_days": None}, False),
        ({"max_budget_crossed_at": ts("2026-11-19 00:00")}, False),  # already crossed
        ({"period_spend_usd": Decimal(100)}, False),
        ({"is_current_period": False}, False),
        ({"period_end": None}, False),  # open-ended: no period end to forecast to
        ({"max_budget_usd": None}, False),  # no budget at all
        ({"max_budget_usd": None, "soft_budget_usd": Decimal(90)}, True),  # soft when no max
        ({"period_start": ts("2026-11-19 00:00"), "period_end": ts("2026-12-19 00:00")}, False),
    ],
)
def test_projected_rule(change, fires):
    alert = projected_alert(_period({**BASE, **change}), NOW)
    assert (alert is not None) is fires
    if alert is not None:
        assert alert.alert_type == "projected"
        assert alert.breached_at == datetime(2026, 11, 20, 11, tzinfo=UTC)
        assert alert.projected_period_spend_usd == Decimal(130)
        assert "forecast" in alert.message


def test_projected_alert_has_one_id_per_period_whatever_the_forecast():
    first = projected_alert(_period(BASE), NOW)
    later = projected_alert(
        _period(
            {**BASE, "projected_period_spend_usd": Decimal(150), "period_spend_usd": Decimal(70)}
        ),
        NOW + timedelta(days=2),
    )
    next_period = projected_alert(
        _period({**BASE, "period_start": ts("2026-12-01"), "period_end": ts("2027-01-01")}),
        datetime(2026, 12, 20, tzinfo=UTC),
    )
    assert first.alert_id == later.alert_id
    assert next_period.alert_id != first.alert_id


def test_projected_minimums_are_configurable():
    assert projected_alert(_period({**BASE, "projection_basis_days": 2}), NOW, min_basis_days=2)
    assert projected_alert(_period(BASE), NOW, min_elapsed_fraction=0.9) is None


# --- health, payloads, secrets ---------------------------------------------------------------


def test_failed_error_checks_block_and_warnings_do_not():
    problems = failed_check_problems(
        [
            {
                "check": "raw/spend_logs:unique",
                "status": "FAILED",
                "passed": False,
                "severity": "ERROR",
                "description": "2 duplicate ids",
            },
            {
                "check": "raw/spend_logs:drift",
                "status": "FAILED",
                "passed": False,
                "severity": "WARN",
            },
            {"check": "fct:not_null", "status": "SUCCEEDED", "passed": True, "severity": "ERROR"},
        ]
    )
    assert [p.key for p in problems] == ["check:raw/spend_logs:unique"]
    text = health_message(problems)
    assert "2 duplicate ids" in text
    assert "not 'within budget'" in text
    assert "the budget status is unknown" in text


def test_failure_reason_names_the_failed_blocking_checks_not_the_exception():
    error = RuntimeError("1 blocking asset check failed with ERROR severity:")
    failed = [
        {
            "check": "raw/spend_logs:reconciliation",
            "status": "SUCCEEDED",
            "passed": False,
            "severity": "ERROR",
            "description": "source disabled: SpendLogs is empty",
        },
        {
            "check": "raw/spend_logs:drift",
            "status": "SUCCEEDED",
            "passed": False,
            "severity": "WARN",
        },
    ]
    assert failure_reason(error, failed) == (
        "upstream check raw/spend_logs:reconciliation failed: source disabled: SpendLogs is empty"
    )
    assert failure_reason(error, failed[1:]) == (
        "RuntimeError: 1 blocking asset check failed with ERROR severity:"
    )
    assert failure_reason(None, []) == "step failed"


def test_payloads_carry_contract_and_idempotency_key():
    periods, crossings = designed_marts()
    alert = _decide(_joined(crossings, periods), [], NOW)[0]
    body = json_payload(alert)
    assert body["idempotency_key"] == alert.alert_id
    assert set(CONTRACT_COLUMNS) <= set(body)
    assert body["breached_at"].endswith("Z")
    slack = slack_payload(alert)
    assert alert.message in slack["text"]
    assert slack["blocks"][0]["type"] == "header"
    assert alert.alert_id in slack["blocks"][-1]["elements"][0]["text"]


def test_redact_removes_url_and_token_path():
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"
    text = f"POST {url} failed; path services/T000/B000/XXXXSECRETXXXX"
    clean = redact(text, [url, None])
    assert "XXXXSECRETXXXX" not in clean
    assert "hooks.slack.com/services" not in clean


def test_labels_for_people():
    token = "cfedbd559269d70529f8d7e5115ca217a09d686c39ae646906966f46c703e747"
    assert entity_label("key", token, "prod-app") == "Key 'prod-app' (cfedbd559269…)"
    assert entity_label("team_member", "t-1/u-2", None) == "Team member t-1/u-2"
    assert entity_label("tag", "prod", "prod") == "Tag prod"
    assert budget_label("tag_budget", "b-9") == "the tag's budget b-9"
    assert entity_label("project", "proj-1", "Search") == "Project 'Search' (proj-1)"
    assert budget_label("project_budget", "b-7") == "the project's budget b-7"
    assert budget_label("key_budget", "b-1") == "the key's budget b-1"
    assert budget_label("team", "team-1") == "the team's limits"
    assert budget_label(None, None) == ""


def test_evaluation_time_prefers_config_then_marts_then_now():
    from dagster_project.defs.alerts.assets import evaluation_time

    marts = [
        BudgetPeriod.from_row(period(entity_type="team", entity_id="t", evaluated_at=at))
        for at in (datetime(2026, 11, 20, 12), None)
    ]
    assert evaluation_time("2026-11-21T08:00:00Z", marts) == datetime(2026, 11, 21, 8, tzinfo=UTC)
    assert evaluation_time(None, marts) == datetime(2026, 11, 20, 12, tzinfo=UTC)
    before = datetime.now(UTC)
    assert before <= evaluation_time(None, []) <= datetime.now(UTC)
