from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from src.runner import SettingsInvalid
from src.runner.redis_url import redacted
from src.settings import PROJECT_DIR, Settings, WorkerSettings, get_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(str(tmp_path))
    s = Settings()
    # one default for every command: the embedded Redis of `make run`, on a socket only its owner can open
    assert s.redis_url is None
    assert s.redis_target() == f"unix://{PROJECT_DIR / '.state' / 'redis' / 'redis.sock'}"
    assert s.redis_settings().unix_socket_path == str(s.embedded_socket)
    assert s.queue_name == "arq:queue"
    assert s.signing_secret is None


def test_state_dir_moves_the_default_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JOBS_STATE_DIR", "here")
    assert Settings().redis_target() == f"unix://{tmp_path / 'here' / 'redis' / 'redis.sock'}"


def test_unix_urls_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_REDIS_URL", "unix://:s%40cret@/run/redis/redis.sock?db=2")
    rs = Settings().redis_settings()
    assert (rs.unix_socket_path, rs.database, rs.password) == ("/run/redis/redis.sock", 2, "s@cret")


def test_redis_url_from_dotenv_counts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("JOBS_REDIS_URL=redis://10.1.2.3:6380/4\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JOBS_REDIS_URL", raising=False)
    assert Settings().redis_target() == "redis://10.1.2.3:6380/4"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://nope", "starts with redis://, rediss:// or unix://"),
        ("unix://relative.sock", "absolute path"),
        ("redis://host:6379/zero", "database number"),
        ("redis://u:hunter2@host:99999/0", "bad Redis URL 'redis://u:***@host:99999/0'"),
    ],
)
def test_bad_redis_urls_say_why_and_hide_passwords(monkeypatch: pytest.MonkeyPatch, url: str, problem: str) -> None:
    monkeypatch.setenv("JOBS_REDIS_URL", url)
    get_settings.cache_clear()
    with pytest.raises(SettingsInvalid) as raised:
        get_settings()
    get_settings.cache_clear()
    assert str(raised.value).startswith("JOBS_REDIS_URL: ") and problem in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_redacted_hides_only_the_password() -> None:
    assert redacted("rediss://app:p%40ss@h:6380/1") == "rediss://app:***@h:6380/1"
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_MAX_JOBS", "many")
    monkeypatch.setenv("JOBS_SMTP__PORT", "0")
    monkeypatch.setenv("JOBS_SIGNING_SECRET", "")
    get_settings.cache_clear()
    with pytest.raises(SettingsInvalid) as raised:
        get_settings()
    get_settings.cache_clear()
    lines = str(raised.value).splitlines()
    assert (
        lines[0] == "JOBS_MAX_JOBS: input should be a valid integer, unable to parse string as an integer (got 'many')"
    )
    assert lines[1].startswith("JOBS_SMTP__PORT: input should be greater than or equal to 1")


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_LOG_LEVEL", "debug")
    assert Settings().log_level == "DEBUG"


def test_env_prefix_nested_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    (directory / ".env").write_text("JOBS_MAX_JOBS=7\nJOBS_SMTP__PORT=2525\n")
    monkeypatch.chdir(directory)
    monkeypatch.setenv("JOBS_QUEUE_NAME", "emails")
    s = Settings()
    assert (s.max_jobs, s.smtp.port, s.queue_name) == (7, 2525, "emails")


def test_tls_url_with_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_REDIS_URL", "rediss://app:p%40ss@redis.example:6380/3")
    rs = Settings().redis_settings()
    assert (rs.ssl, rs.host, rs.port, rs.database, rs.username, rs.password) == (
        True, "redis.example", 6380, 3, "app", "p@ss",
    )  # fmt: skip


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_MAX_JOBS", "0")
    with pytest.raises(ValueError, match="max_jobs"):
        Settings()
    monkeypatch.delenv("JOBS_MAX_JOBS")
    monkeypatch.setenv("JOBS_REDIS_URL", "http://nope")
    with pytest.raises(ValueError, match="redis_url"):
        Settings()
    monkeypatch.setenv("JOBS_LOG_LEVEL", "loud")
    with pytest.raises(ValueError, match="log_level"):
        Settings()


def test_secrets_are_never_shown(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("JOBS_SIGNING_SECRET", "hunter2")
    monkeypatch.setenv("JOBS_SMTP__PASSWORD", "hunter3")
    s = Settings()
    logging.getLogger("test").warning("settings: %s", s)
    assert "hunter2" not in repr(s) and "hunter3" not in repr(s) and "hunter" not in caplog.text
    assert s.codec().signs


def test_get_settings_is_cached_and_clearable(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("JOBS_QUEUE_NAME", "a")
    assert get_settings() is get_settings()
    monkeypatch.setenv("JOBS_QUEUE_NAME", "b")
    assert get_settings().queue_name == "a"
    get_settings.cache_clear()
    assert get_settings().queue_name == "b"
    get_settings.cache_clear()


def test_worker_settings_carry_our_jobs_cron_and_codec() -> None:
    # the example jobs and entry are there; a user's own additions (README, "Writing a job") may be too
    names = {spec.name for spec in WorkerSettings.functions}
    assert {"deliver_webhook", "send_email", "record_queue_health"} <= names
    assert "queue-health" in [e.name for e in WorkerSettings.cron_entries]
    assert WorkerSettings.codec.dumps({"x": 1}).startswith(b'{"v":1')


def test_redis_password_is_hidden_in_reprs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("JOBS_REDIS_URL", "redis://app:hunter4@redis.example:6379/0")
    s = Settings()
    logging.getLogger("test").warning("settings: %s / %r / %r", s, s, s.redis_settings())
    assert "hunter4" not in repr(s) and "hunter4" not in str(s) and "hunter4" not in repr(s.redis_settings())
    assert "hunter4" not in caplog.text
    assert "redis://app:***@redis.example:6379/0" in repr(s)
    assert s.redis_settings().password == "hunter4"  # still used to connect


def test_previous_signing_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from src.runner import Codec

    monkeypatch.setenv("JOBS_SIGNING_SECRET", "new-one")
    monkeypatch.setenv("JOBS_SIGNING_SECRETS_PREVIOUS", '["old-one", "older-one"]')
    s = Settings()
    assert "old-one" not in repr(s)
    payload = Codec("older-one").dumps_job({"f": "x"}, "j", "q")
    assert s.codec().loads(payload, job_id="j", queue="q") == {"f": "x"}
    monkeypatch.delenv("JOBS_SIGNING_SECRET")
    with pytest.raises(ValueError, match="signing_secrets_previous only verify"):
        Settings()


def test_tls_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    ca, cert, key = (Path(str(tmp_path)) / name for name in ("ca.pem", "client.pem", "client.key"))
    for f in (ca, cert, key):
        f.write_text("-")
    monkeypatch.setenv("JOBS_REDIS_URL", "rediss://redis.example:6380/0")
    rs = Settings().redis_settings()
    assert (rs.ssl, rs.ssl_cert_reqs, rs.ssl_check_hostname) == (True, "required", True)  # verified by default
    monkeypatch.setenv("JOBS_REDIS_CA_FILE", str(ca))
    monkeypatch.setenv("JOBS_REDIS_CERT_FILE", str(cert))
    with pytest.raises(ValueError, match="redis_cert_file and redis_key_file go together"):
        Settings()
    monkeypatch.setenv("JOBS_REDIS_KEY_FILE", str(key))
    rs = Settings().redis_settings()
    assert (rs.ssl_ca_certs, rs.ssl_certfile, rs.ssl_keyfile) == (str(ca), str(cert), str(key))
    monkeypatch.setenv("JOBS_REDIS_URL", "redis://redis.example:6379/0")
    with pytest.raises(ValueError, match="apply to TLS only: use a rediss:// redis_url"):
        Settings()
    monkeypatch.setenv("JOBS_REDIS_URL", "rediss://redis.example:6380/0")
    monkeypatch.setenv("JOBS_REDIS_CA_FILE", str(ca) + ".missing")
    with pytest.raises(ValueError, match="redis_ca_file"):
        Settings()


def test_importing_settings_leaves_the_cron_table_to_the_worker() -> None:
    """A bad cron entry stops the worker only: producers, the API and the CLI never import the table."""
    code = "import sys, src.settings, src.cli, examples.fastapi_app; print('src.cron' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "False", imported.stderr


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"JOBS_REDIS_SENTINELS": "127.0.0.1"},
            "JOBS_REDIS_SENTINELS: a sentinel address is host:port, got '127.0.0.1'",
        ),
        ({"JOBS_REDIS_SENTINELS": "h:26379"}, "redis_url names the master as the sentinels know it"),
        ({"JOBS_REDIS_SENTINELS": "h:26379", "JOBS_REDIS_URL": "unix:///tmp/r.sock"}, "redis://mymaster/0"),
        ({"JOBS_REDIS_SENTINEL_PASSWORD": "s3cret"}, "redis_sentinel_password needs redis_sentinels"),
    ],
)
def test_sentinel_settings_are_checked(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    with pytest.raises(SettingsInvalid) as raised:
        get_settings()
    get_settings.cache_clear()
    assert problem in str(raised.value) and "s3cret" not in str(raised.value)


def test_sentinel_settings_name_the_master_and_hide_both_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_REDIS_SENTINELS", "10.0.0.1:26379, 10.0.0.2:26380")
    monkeypatch.setenv("JOBS_REDIS_URL", "redis://:data-pw@orders/2")
    monkeypatch.setenv("JOBS_REDIS_SENTINEL_PASSWORD", "sentinel-pw")
    redis_settings = Settings().redis_settings()
    assert redis_settings.sentinel and redis_settings.sentinel_master == "orders"
    assert redis_settings.host == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert (redis_settings.password, redis_settings.database) == ("data-pw", 2)
    assert "pw" not in repr(redis_settings)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"JOBS_REDIS_URL": ""}, "with redis_cluster, redis_url names one node of the cluster"),
        ({"JOBS_REDIS_URL": "unix:///tmp/r.sock"}, "redis_url names one node of the cluster: redis://host:port"),
        ({"JOBS_REDIS_URL": "redis://:s3cret@h:7000/2"}, "a Redis Cluster has database 0 only"),
        ({"JOBS_REDIS_SENTINELS": "h:26379"}, "redis_cluster and redis_sentinels exclude each other"),
        ({"JOBS_QUEUE_NAME": "orders"}, "use '{orders}' (JOBS_QUEUE_NAME)"),
        ({"JOBS_REDIS_CLUSTER": "maybe"}, "JOBS_REDIS_CLUSTER: input should be a valid boolean"),
    ],
)
def test_cluster_settings_are_checked(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str) -> None:
    monkeypatch.setenv("JOBS_REDIS_CLUSTER", "true")
    monkeypatch.setenv("JOBS_REDIS_URL", "redis://10.0.0.1:7000")
    monkeypatch.setenv("JOBS_QUEUE_NAME", "{orders}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    with pytest.raises(SettingsInvalid) as raised:
        get_settings()
    get_settings.cache_clear()
    assert problem in str(raised.value) and "s3cret" not in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


def test_cluster_settings_carry_tls_and_password_to_every_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from src.runner.cluster_pool import cluster_kwargs

    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    monkeypatch.setenv("JOBS_REDIS_CLUSTER", "true")
    monkeypatch.setenv("JOBS_REDIS_URL", "rediss://app:data-pw@10.0.0.1:7000")
    monkeypatch.setenv("JOBS_REDIS_CA_FILE", str(ca))
    monkeypatch.setenv("JOBS_QUEUE_NAME", "{orders}")
    redis_settings = Settings().redis_settings()
    assert redis_settings.cluster is True  # type: ignore[attr-defined]  # our RedisSettings
    assert "pw" not in repr(redis_settings)
    kwargs = cluster_kwargs(redis_settings)
    assert (kwargs["host"], kwargs["port"], kwargs["username"], kwargs["password"]) == (
        "10.0.0.1",
        7000,
        "app",
        "data-pw",
    )
    assert kwargs["ssl"] and kwargs["ssl_ca_certs"] == str(ca) and kwargs["ssl_check_hostname"]
    # no resend of a command whose connection broke: the caller's outage handling decides
    assert kwargs["cluster_error_retry_attempts"] == 0 and kwargs["connection_error_retry_attempts"] == 0


def test_pool_sizes_reach_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    from src.runner.launch import worker_kwargs
    from src.settings import _worker_settings

    monkeypatch.setenv("JOBS_SYNC_THREADS", "3")
    monkeypatch.setenv("JOBS_JOB_PROCESSES", "2")
    get_settings.cache_clear()
    try:
        kwargs = worker_kwargs(_worker_settings())
    finally:
        get_settings.cache_clear()
    assert (kwargs["sync_threads"], kwargs["job_processes"]) == (3, 2)
    monkeypatch.setenv("JOBS_SYNC_THREADS", "0")
    with pytest.raises(SettingsInvalid, match="JOBS_SYNC_THREADS: input should be greater than or equal to 1"):
        get_settings()
    get_settings.cache_clear()
