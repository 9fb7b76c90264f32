"""Settings: defaults, the YAML file, the environment and overrides, and a clear refusal of a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_app.config import ConfigError, load_settings


@pytest.mark.parametrize(("name", "value", "said"), [
    ("DRIFT_POLICY", "sometimes", "DRIFT_POLICY must be one of warn, reject"),
    ("LOG_DURABILITY", "eventually", "LOG_DURABILITY must be one of default, strict"),
    ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of text, json"),
    ("MAX_BATCH_ROWS", "0", "MAX_BATCH_ROWS must be at least 1"),
    ("MAX_BATCH_ROWS", "many", "MAX_BATCH_ROWS='many' is not a valid int"),
    ("DRIFT_ALPHA", "1.5", "DRIFT_ALPHA must be between 0 and 1"),
    ("LOG_SHIP_INTERVAL", "-1", "LOG_SHIP_INTERVAL must be at least 0"),
    ("LOG_JOURNAL_MAX_BYTES", "8192", "LOG_JOURNAL_MAX_BYTES must be at least LOG_JOURNAL_SEGMENT_BYTES"),
    ("DEV_MODE", "perhaps", "DEV_MODE='perhaps' is not a valid bool"),
    ("MODEL_VERIFY_KEY", "/nonexistent/key.pem", "MODEL_VERIFY_KEY /nonexistent/key.pem does not exist"),
])
def test_a_bad_value_stops_the_service_naming_it(name, value, said):
    with pytest.raises(ConfigError, match=said.replace("(", r"\(")):
        load_settings(environ={name: value})


def test_sources_in_order_and_the_older_journal_name(tmp_path):
    config_file = tmp_path / "service.yaml"
    config_file.write_text("MAX_BATCH_ROWS: 10\nDRIFT_POLICY: reject\nLOG_SPOOL_DIR: /from/file\n")
    settings = load_settings({"DRIFT_POLICY": "warn"}, environ={"CONFIG_FILE": str(config_file),
                                                                 "MAX_BATCH_ROWS": "20"})
    assert (settings.MAX_BATCH_ROWS, settings.DRIFT_POLICY) == (20, "warn")  # env over file, overrides over env
    assert Path("/old/name") == load_settings(environ={"LOG_SPOOL_DIR": "/old/name"}).LOG_JOURNAL_DIR
    both = load_settings(environ={"LOG_SPOOL_DIR": "/old/name", "LOG_JOURNAL_DIR": "/new/name"})
    assert Path("/new/name") == both.LOG_JOURNAL_DIR


def test_a_config_file_with_an_unknown_key_is_refused(tmp_path):
    config_file = tmp_path / "service.yaml"
    config_file.write_text("MAX_BATCH_ROWZ: 10\n")
    with pytest.raises(ConfigError, match="unknown keys MAX_BATCH_ROWZ"):
        load_settings(environ={"CONFIG_FILE": str(config_file)})
