"""start_server.sh as a new user runs it: .env read whole, no password printed, nothing deleted that is not its own.

The script runs in a scratch copy of the project whose virtualenv holds stand-ins for flask and gunicorn
that print what they were given, so nothing is installed and no server starts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = """#!/usr/bin/env bash
echo "{name} $* ADMIN_TOKEN=${{ADMIN_TOKEN:-}} LOG_JOURNAL_DIR=${{LOG_JOURNAL_DIR:-}}"
"""


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "start_server.sh", root)
    for name in ("requirements.txt", "requirements-train.txt"):
        shutil.copy(ROOT / name, root)
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    for name in ("flask", "gunicorn"):
        (bin_dir / name).write_text(STAND_IN.format(name=name.upper()))
        (bin_dir / name).chmod(0o755)
    wanted = hashlib.sha256(b"".join((root / name).read_bytes()
                                     for name in ("requirements.txt", "requirements-train.txt"))).hexdigest()
    (root / ".venv" / ".requirements.sha256").write_text(wanted + "\n")
    (root / "models" / "boston-knn").mkdir(parents=True)
    (root / "models" / "boston-knn" / "ACTIVE").write_text("20260101T000000Z\n")
    return root


def start(project: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items()
             if key not in ("ADMIN_TOKEN", "DATABASE_URL", "DEV_MODE", "LOG_JOURNAL_DIR", "LOG_SPOOL_DIR",
                            "MODEL_DIR", "PROMETHEUS_MULTIPROC_DIR", "VENV", "ENV_FILE")}
    return subprocess.run(["bash", str(project / "start_server.sh")], cwd=project, env={**clean, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_last_line_of_env_counts_without_a_newline(project):
    """Regression: .env without a trailing newline dropped its last line (an ADMIN_TOKEN there was ignored)."""
    (project / ".env").write_text("LOG_LEVEL=INFO\nADMIN_TOKEN=from-the-env-file")
    done = start(project)
    assert done.returncode == 0, done.stderr
    assert "GUNICORN -c gunicorn.conf.py flask_app.wsgi:app ADMIN_TOKEN=from-the-env-file" in done.stdout
    assert not (project / "var" / "admin_token").exists()


def test_the_database_password_is_never_printed(project):
    """Regression: 'applying database migrations (postgresql://postgres:Sup3rS3cret@...)'."""
    done = start(project, DATABASE_URL="postgresql://postgres:Sup3r@S3cret@db.example:5432/predictions",
                 ADMIN_TOKEN="t")
    assert done.returncode == 0, done.stderr
    assert "Sup3r" not in done.stdout + done.stderr and "S3cret" not in done.stdout + done.stderr
    assert "postgresql://postgres:***@db.example:5432/predictions" in done.stdout


def test_only_prometheus_files_are_cleared_from_the_metrics_directory(project):
    """Regression: rm -rf "$PROMETHEUS_MULTIPROC_DIR" ran unguarded; pointed at var/ it deleted the log."""
    var = project / "var"
    (var / "journal").mkdir(parents=True)
    keep = [var / "predictions.db", var / "journal" / "seg-1.journal", var / "admin_token"]
    for path in keep:
        path.write_text("precious")
    stale = [var / "counter_123.db", var / "histogram_9.db"]
    for path in stale:
        path.write_text("old figures")
    done = start(project, PROMETHEUS_MULTIPROC_DIR=str(var), ADMIN_TOKEN="t")
    assert done.returncode == 0, done.stderr
    assert all(path.read_text() == "precious" for path in keep)
    assert not any(path.exists() for path in stale)


def test_the_journal_defaults_under_var_and_takes_the_older_name_too(project):
    done = start(project, ADMIN_TOKEN="t")
    assert f"LOG_JOURNAL_DIR={project}/var/journal" in done.stdout
    done = start(project, ADMIN_TOKEN="t", LOG_SPOOL_DIR=str(project / "spool"))
    assert f"LOG_JOURNAL_DIR={project}/spool" in done.stdout
