"""Settings: embedded defaults, MCP_V8_* variables, serve flags (flags win), clear errors."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_v8 import cli, config
from mcp_v8.config import Settings

KEY = "a-heap-signing-key-of-this-test"


def test_defaults_are_loopback_and_local() -> None:
    s = config.from_env({})
    assert (s.host, s.port, s.data_dir) == ("127.0.0.1", 3000, Path("data"))
    assert s.api_token is None and s.durable_heaps is False
    assert s.snapshot_default is True  # a client that knows only the contract gets a heap
    assert s.workers >= 1


def test_environment_overrides() -> None:
    s = config.from_env(
        {
            "MCP_V8_PORT": "8123",
            "MCP_V8_DATA_DIR": "/srv/mcp",
            "MCP_V8_ALLOWED_HOSTS": "a.example, b.example",
            "MCP_V8_ALLOWED_ORIGINS": "http://a.example:8080, null",
            "MCP_V8_API_TOKEN": "t",
            "MCP_V8_DURABLE_HEAPS": "yes",
            "MCP_V8_SNAPSHOT_DEFAULT": "false",
            "MCP_V8_WORKERS": "",  # empty means unset
        }
    )
    assert s.port == 8123 and s.data_dir == Path("/srv/mcp") and s.api_token == "t"
    assert s.allowed_hosts == ("a.example", "b.example") and s.durable_heaps is True
    assert s.snapshot_default is False
    assert s.allowed_origins == ("http://a.example:8080", "null")
    assert config.from_env({}).allowed_origins == ()  # no Origin allowed by default
    assert s.workers == config.Settings().workers


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MCP_V8_PORT", "http"),
        ("MCP_V8_DURABLE_HEAPS", "maybe"),
        ("MCP_V8_SNAPSHOT_DEFAULT", "sometimes"),
        ("MCP_V8_ALLOWED_ORIGINS", "http://a.example/x"),
    ],
)
def test_bad_environment_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        config.from_env({name: value})


def test_flags_win_over_environment_and_help_shows_defaults(tmp_path: Path) -> None:
    env = {"MCP_V8_PORT": "8123", "PATH": "/usr/bin:/bin"}
    help_text = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "serve", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout
    assert (
        "default: 8123" in help_text
        and "MCP_V8_MAX_HEAP_MB" in help_text
        and "default: 127.0.0.1" in help_text
        and "--allowed-origins" in help_text
        and "--snapshot-default" in help_text
        and "MCP_V8_SNAPSHOT_DEFAULT" in help_text
    )
    s = config.from_env(env).with_overrides(port=9000, data_dir=None)
    assert s.port == 9000 and s.data_dir == Path("data")


def test_bad_environment_value_stops_serve_with_a_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "serve"],
        capture_output=True, text=True, env={"MCP_V8_PORT": "nope", "PATH": "/usr/bin:/bin"}, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "MCP_V8_PORT='nope'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, [], True),
        ({}, ["--snapshot-default", "false"], False),
        ({"MCP_V8_SNAPSHOT_DEFAULT": "off"}, [], False),
        ({"MCP_V8_SNAPSHOT_DEFAULT": "0"}, ["--snapshot-default", "yes"], True),
    ],
)
def test_snapshot_default_from_flag_and_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], flags: list[str], expected: bool
) -> None:
    monkeypatch.delenv("MCP_V8_SNAPSHOT_DEFAULT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    cli._settings_parser(parser.add_subparsers(dest="command"), "serve", "", "")
    args = parser.parse_args(["serve", *flags])
    # what ``mcp-v8 serve`` does with its arguments
    settings = args.base.with_overrides(**{f.name: getattr(args, f.name) for f in config.FIELDS})
    assert settings.snapshot_default is expected


def test_snapshot_default_flag_refuses_other_words(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli._settings_parser(parser.add_subparsers(dest="command"), "serve", "", "")
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--snapshot-default", "maybe"])
    assert "--snapshot-default" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"heap_store": "postgresql"}, "heap_store postgresql needs database_url"),
        ({"heap_store": "file", "database_url": "postgresql://u@h/db"}, "nodes share heaps"),
    ],
)
def test_heap_stores_that_contradict_the_database_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**values, heap_signing_key=(KEY,))  # type: ignore[arg-type]
    assert Settings(database_url="postgresql://u@h/db", heap_signing_key=(KEY,)).heap_backend == "postgresql"
    assert Settings().heap_backend == "file"
    assert Settings(heap_store="s3://b/p", heap_signing_key=(KEY,)).heap_backend == "s3://b/p"


def test_contradicting_flags_end_the_command_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["serve", "--heap-store", "postgresql"])
    assert str(e.value) == "mcp-v8: heap_store postgresql needs database_url"


def test_mcp_tool_calls() -> None:
    assert Settings().mcp_tool_calls == 32
    assert config.from_env({"MCP_V8_MCP_TOOL_CALLS": "4"}).mcp_tool_calls == 4
    with pytest.raises(ValueError, match="mcp_tool_calls must be at least 1"):
        Settings(mcp_tool_calls=0)


def test_tool_call_limits() -> None:
    s = Settings()
    assert (
        s.max_tool_calls,
        s.max_tool_calls_ceiling,
        s.tool_call_timeout_secs,
        s.tool_result_max_bytes,
    ) == (
        50,
        1000,
        60,
        4 << 20,
    )
    env = {
        "MCP_V8_MAX_TOOL_CALLS": "0",
        "MCP_V8_TOOL_CALL_TIMEOUT_SECS": "5",
        "MCP_V8_TOOL_RESULT_MAX_BYTES": "99",
    }
    s = config.from_env(env)
    assert (s.max_tool_calls, s.tool_call_timeout_secs, s.tool_result_max_bytes) == (0, 5, 99)
    for bad, said in [
        ({"max_tool_calls": 1001}, "max_tool_calls must be between 0 and max_tool_calls_ceiling (1000)"),
        ({"max_tool_calls": 20, "max_tool_calls_ceiling": 10}, "max_tool_calls must be between 0 and"),
        ({"max_tool_calls": -1}, "max_tool_calls must be between"),
        ({"tool_call_timeout_secs": 0}, "tool_call_timeout_secs must be at least 1"),
        ({"max_tool_calls_in_flight": 0}, "max_tool_calls_in_flight must be at least 1"),
        ({"tool_result_max_bytes": (16 << 20) + 1}, "tool_result_max_bytes must be between 1 and 16777216"),
    ]:
        with pytest.raises(ValueError, match=re.escape(said)):
            Settings(**bad)  # type: ignore[arg-type]


def test_a_requests_max_tool_calls_or_the_servers_default_is_in_its_spec() -> None:
    from mcp_v8.executions.spec import ToolLimits, spec_from_request

    settings = Settings(max_tool_calls=7, tool_call_timeout_secs=3, tool_result_max_bytes=1000)
    assert spec_from_request({"code": "1"}, settings).tools == ToolLimits(7, 3.0, 1000)
    assert spec_from_request({"code": "1", "max_tool_calls": 0}, settings).tools.max_calls == 0
    assert spec_from_request({"code": "1", "max_tool_calls": None}, settings).tools.max_calls == 7
    assert spec_from_request({"code": "1", "max_tool_calls": 900}, settings).tools.max_calls == 900


# -- passwords are never shown ---------------------------------------------------------------

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("conninfo", "shown", "written"),
    [
        (f"postgresql://u:{SECRET}@db.internal:5432/mcp", "postgresql://u:***@db.internal:5432/mcp", SECRET),
        (f"postgres://u:{SECRET}%40x@h/db", "postgres://u:***@h/db", f"{SECRET}@x"),
        (f"postgresql://u@h/db?password={SECRET}", "postgresql://u@h/db?password=***", SECRET),
        (
            f"postgresql://u:{SECRET}@h1,h2:5433/db?sslmode=require&PASSWORD={SECRET}&x=1",
            "postgresql://u:***@h1,h2:5433/db?sslmode=require&PASSWORD=***&x=1",
            SECRET,
        ),
        (f"host=h password={SECRET} dbname=mcp", "host=h password=*** dbname=mcp", SECRET),
        (f"host=h password = '{SECRET} \\' x' user=u", "host=h password = *** user=u", f"{SECRET} ' x"),
        ("postgresql://h:5432/db?application_name=a", "postgresql://h:5432/db?application_name=a", None),
    ],
)
def test_database_passwords_are_redacted_in_both_forms(
    conninfo: str, shown: str, written: str | None
) -> None:
    from mcp_v8.redaction import passwords, redact, redact_url

    assert redact_url(conninfo) == shown
    assert config.shown("database_url", conninfo) == (
        shown if conninfo.startswith("postgres") else "(not shown)"
    )
    if written is not None:  # a driver's message may quote the password, decoded or not
        assert written in passwords(conninfo)
        message = redact(f"cannot use {conninfo}: it quotes {written!r}", passwords(conninfo))
        assert SECRET not in message and message.startswith(f"cannot use {shown}")
        assert message.endswith(f"it quotes {repr(written).replace(written, '***')}")


def test_help_and_setting_errors_never_show_the_database_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://u:{SECRET}@db.internal/mcp?password={SECRET}x"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_V8_")}
    env.update(MCP_V8_DATABASE_URL=url, MCP_V8_API_TOKEN=SECRET, MCP_V8_HEAP_SIGNING_KEY=KEY)
    help_text = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "serve", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout
    assert "postgresql://u:***@db.internal/mcp?password=***" in help_text and SECRET not in help_text
    with pytest.raises(ValueError) as e:  # not a URL: not shown at all
        config.from_env({"MCP_V8_DATABASE_URL": f"u:{SECRET}@db.internal/mcp"})
    assert SECRET not in str(e.value) and "expected a postgresql:// URL" in str(e.value)
    parser = argparse.ArgumentParser()
    cli._settings_parser(parser.add_subparsers(dest="command"), "serve", "", "")
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--database-url", f"u:{SECRET}@db.internal/mcp"])
    err = capsys.readouterr().err
    assert "--database-url: expected a postgresql:// URL" in err and SECRET not in err
    settings = Settings(database_url=url, api_token="tok", heap_signing_key=(KEY,))
    assert config.secrets(settings) == [f"{SECRET}x", SECRET, "tok", KEY]
    assert KEY not in help_text


def test_log_records_never_show_a_password_the_driver_quotes() -> None:
    # libpq quotes the part of a connection string it cannot parse: here the password.
    import io
    import logging

    psycopg = pytest.importorskip("psycopg")
    from mcp_v8.redaction import redact_logs

    url = f"postgresql://u:{SECRET}%ZZ@127.0.0.1:1/db"
    with pytest.raises(psycopg.Error) as raised:
        psycopg.connect(url, connect_timeout=1)
    assert f"{SECRET}%ZZ" in str(raised.value)  # what would reach the log
    stream = io.StringIO()
    logger = logging.getLogger("test-redaction")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        redact_logs(config.secrets(Settings(database_url=url, heap_signing_key=(KEY,))), logger)
        logger.warning("error connecting to %s: %s", url, raised.value)
        try:
            raise RuntimeError(f"pool failed: {raised.value}")
        except RuntimeError:
            logger.exception("startup failed", stack_info=True)
    finally:
        logger.removeHandler(handler)
    logged = stream.getvalue()
    assert SECRET not in logged
    assert "postgresql://u:***@127.0.0.1:1/db" in logged and "RuntimeError: pool failed" in logged


@pytest.mark.parametrize(
    "values",
    [
        {"database_url": "postgresql://u@h/db"},
        {"database_url": "postgresql://u@h/db", "heap_store": "s3://b/p"},
        {"heap_store": "s3://b/p"},
    ],
)
def test_a_shared_heap_store_needs_a_signing_key(values: dict[str, str]) -> None:
    """Every node must sign and verify with one key: none generated per node for a shared store."""
    with pytest.raises(ValueError, match="needs a heap signing key, the same on every node"):
        Settings(**values)  # type: ignore[arg-type]
    assert Settings(**values, heap_signing_key_file=Path("keys")).shared_heaps  # type: ignore[arg-type]
    assert not Settings().shared_heaps


def test_signing_keys_are_a_list_never_shown(capsys: pytest.CaptureFixture[str]) -> None:
    settings = config.from_env({"MCP_V8_HEAP_SIGNING_KEY": f"{KEY}-new, {KEY}-old"})
    assert settings.heap_signing_key == (f"{KEY}-new", f"{KEY}-old")  # the first signs
    assert config.shown("heap_signing_key", settings.heap_signing_key) == "(set)"
    with pytest.raises(ValueError, match="heap signing key 2 is 5 bytes; at least 16") as e:
        config.from_env({"MCP_V8_HEAP_SIGNING_KEY": f"{KEY},short"})
    assert KEY not in str(e.value)
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--database-url", "postgresql://u@h/db"])
    assert "needs a heap signing key" in str(exited.value)
