"""The configuration contract: defaults, .env, and one-sentence errors for bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dagster_project.settings import ConfigError, default_memory_limit, load_settings


def test_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.database_url is None
    assert settings.table_prefix == "Dheera AI_"
    assert settings.warehouse_dir == tmp_path / "data"
    assert settings.warehouse_path == tmp_path / "data" / "warehouse.duckdb"
    assert settings.build_path == tmp_path / "data" / "state" / "build.duckdb"
    assert settings.dbt_target == "duckdb"
    assert settings.budget_timezone == "UTC"
    assert settings.include_payload_columns is False


def test_dotenv_is_read_and_process_environment_wins(tmp_path: Path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "DATABASE_URL=postgresql://u:p@db:5432/litellm\n"
        "PROXY_TABLE_PREFIX=LiteLLM_\n"
        f"SPEND_WAREHOUSE_DIR={tmp_path / 'wh'}\n"
    )
    settings = load_settings(env={"PROXY_TABLE_PREFIX": "Dheera AI_"}, dotenv_path=dotenv)
    assert settings.database_url == "postgresql://u:p@db:5432/litellm"
    assert settings.table_prefix == "Dheera AI_"
    assert settings.warehouse_dir == tmp_path / "wh"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"DATABASE_URL": "mysql://u@h/db"}, "must start with postgresql://"),
        ({"DATABASE_URL": "postgresql:///litellm"}, "has no host"),
        ({"DATABASE_URL": "postgresql://u@host:5432"}, "names no database"),
        ({"DATABASE_URL": "postgresql://u@host:port/db"}, "invalid port"),
        ({"PROXY_TABLE_PREFIX": 'Bad"Prefix'}, "PROXY_TABLE_PREFIX"),
        ({"DBT_TARGET": "snowflake"}, "DBT_TARGET"),
        ({"BUDGET_TIMEZONE": "Mars/Olympus"}, "BUDGET_TIMEZONE"),
        ({"SPEND_WAREHOUSE_DUCKDB_MEMORY_LIMIT": "lots"}, "SPEND_WAREHOUSE_DUCKDB_MEMORY_LIMIT"),
        ({"SPEND_WAREHOUSE_DUCKDB_MEMORY_LIMIT": "256"}, "is not a memory size"),
        ({"SPEND_WAREHOUSE_DUCKDB_THREADS": "0"}, "SPEND_WAREHOUSE_DUCKDB_THREADS"),
        (
            {"SPEND_WAREHOUSE_UNCHANGED_MINUTES": "-5"},
            "SPEND_WAREHOUSE_UNCHANGED_MINUTES='-5' is not a number of at least 0",
        ),
        (
            {"SPEND_WAREHOUSE_UNCHANGED_MINUTES": "hourly"},
            "SPEND_WAREHOUSE_UNCHANGED_MINUTES='hourly' is not a number of at least 0",
        ),
        ({"SPEND_WAREHOUSE_BUDGET_AS_OF": "yesterday"}, "SPEND_WAREHOUSE_BUDGET_AS_OF='yesterday'"),
        ({"SPEND_WAREHOUSE_EXECUTOR": "k8s"}, "SPEND_WAREHOUSE_EXECUTOR='k8s' is not an executor"),
        (
            {"SPEND_WAREHOUSE_EXECUTOR": "celery", "SPEND_WAREHOUSE_CELERY_QUEUE": "two words"},
            "SPEND_WAREHOUSE_CELERY_QUEUE='two words' is not a queue name",
        ),
    ],
)
def test_bad_values_get_one_sentence_naming_the_setting(tmp_path, env, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(env=env, dotenv_path=tmp_path / "missing.env")
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unchanged_work_stands_an_hour_and_zero_turns_it_off(tmp_path):
    assert load_settings(env={}, dotenv_path=tmp_path / "x").unchanged_minutes == 60
    off = load_settings(env={"SPEND_WAREHOUSE_UNCHANGED_MINUTES": "0"}, dotenv_path=tmp_path / "x")
    assert off.unchanged_minutes == 0


def test_socket_urls_of_embedded_servers_are_accepted(tmp_path):
    url = "postgresql://postgres:@/postgres?host=/tmp/pg"
    assert load_settings(env={"DATABASE_URL": url}, dotenv_path=tmp_path / "x").database_url == url


def test_duckdb_limits_have_flat_defaults_and_can_be_raised(tmp_path):
    default = load_settings(env={}, dotenv_path=tmp_path / "x")
    assert default.duckdb_config == {
        "memory_limit": default_memory_limit(),
        "threads": "2",
        "preserve_insertion_order": "false",
    }
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert default_memory_limit() == f"{max(1024, physical // 4 // 2**20)}MB"
    assert default_memory_limit(2 * 2**30) == "1024MB"  # never below 1 GB
    assert default_memory_limit(16 * 2**30) == "4096MB"  # a quarter of the machine
    raised = load_settings(
        env={"SPEND_WAREHOUSE_DUCKDB_MEMORY_LIMIT": "4 GiB", "SPEND_WAREHOUSE_DUCKDB_THREADS": "8"},
        dotenv_path=tmp_path / "x",
    )
    assert raised.duckdb_config["memory_limit"] == "4GiB"
    assert raised.duckdb_config["threads"] == "8"


def test_steps_run_in_process_unless_an_executor_is_chosen(tmp_path):
    executor = load_settings(env={}, dotenv_path=tmp_path / "x").executor
    assert executor.name == "in_process"
    assert executor.celery_broker_url is None  # no broker unless celery is chosen
    multiprocess = load_settings(
        env={
            "SPEND_WAREHOUSE_EXECUTOR": "multiprocess",
            "SPEND_WAREHOUSE_CELERY_BROKER_URL": "not even a URL",  # ignored without celery
        },
        dotenv_path=tmp_path / "x",
    ).executor
    assert multiprocess.name == "multiprocess"
    assert multiprocess.celery_broker_url is None


def test_celery_defaults_to_the_local_rabbitmq_and_redis(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("SPEND_WAREHOUSE_EXECUTOR=celery\n")
    executor = load_settings(env={}, dotenv_path=dotenv).executor
    assert executor.name == "celery"
    assert executor.celery_broker_url == "amqp://guest:guest@127.0.0.1:5672//"
    assert executor.celery_backend_url == "redis://127.0.0.1:6379/0"
    assert executor.celery_queue == "spend_warehouse"
    chosen = load_settings(
        env={
            "SPEND_WAREHOUSE_CELERY_BROKER_URL": "amqps://u:p@mq.internal:5671/prod",
            "SPEND_WAREHOUSE_CELERY_BACKEND_URL": "rpc://",
            "SPEND_WAREHOUSE_CELERY_QUEUE": "spendwh.prod",
        },
        dotenv_path=dotenv,
    ).executor
    assert chosen.celery_broker_url == "amqps://u:p@mq.internal:5671/prod"
    assert chosen.celery_backend_url == "rpc://"
    assert chosen.celery_queue == "spendwh.prod"
    assert "p@mq" not in repr(chosen)  # the URLs may hold passwords


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SPEND_WAREHOUSE_CELERY_BROKER_URL", "postgresql://u:secret@db:5432/x"),
        ("SPEND_WAREHOUSE_CELERY_BROKER_URL", "amqp://u:secret@"),
        ("SPEND_WAREHOUSE_CELERY_BACKEND_URL", "memcached://u:secret@cache:11211"),
        ("SPEND_WAREHOUSE_CELERY_BACKEND_URL", "redis://u:secret@cache:port/0"),
    ],
)
def test_bad_celery_urls_name_the_setting_and_never_echo_it(tmp_path, name, value):
    with pytest.raises(ConfigError) as info:
        load_settings(
            env={"SPEND_WAREHOUSE_EXECUTOR": "celery", name: value},
            dotenv_path=tmp_path / "missing.env",
        )
    message = str(info.value)
    assert message.startswith(name)
    assert "secret" not in message
    assert "\n" not in message
