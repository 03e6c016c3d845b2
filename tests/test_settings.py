from __future__ import annotations

import logging

import pytest

from src.settings import Settings, WorkerSettings, get_settings


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(str(tmp_path))
    s = Settings()
    assert str(s.redis_url) == "redis://127.0.0.1:6379/0"
    assert s.queue_name == "arq:queue"
    assert s.signing_secret is None
    assert s.redis_settings().host == "127.0.0.1"


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
    names = {spec.name for spec in WorkerSettings.functions}
    assert names == {"deliver_webhook", "send_email", "record_queue_health"}
    assert [e.name for e in WorkerSettings.cron_entries] == ["queue-health"]
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
