"""The payload log's and the shadow's settings: off by default, bounded, refused in words that name the variable."""

import pytest

from census_income.serving.settings import Settings, SettingsError, read_settings


def test_off_by_default(monkeypatch):
    for name in ("CENSUS_PAYLOAD_LOG", "CENSUS_SHADOW_MODEL_DIR", "CENSUS_SHADOW_MODEL_VERSION"):
        monkeypatch.delenv(name, raising=False)
    s = read_settings({})
    assert (s.payload_log, s.shadow_model_dir, s.shadow_model_version) == (None, None, None)
    assert (s.payload_log_max_bytes, s.payload_log_files, s.payload_queue) == (64 << 20, 8, 10_000)


def test_an_empty_variable_keeps_the_log_off(monkeypatch):
    monkeypatch.setenv("CENSUS_PAYLOAD_LOG", "")
    assert read_settings({"CENSUS_PAYLOAD_LOG": ""}).payload_log is None


@pytest.mark.parametrize(("name", "value", "words"), [
    ("CENSUS_PAYLOAD_LOG_MAX_BYTES", "100", "greater than or equal to 4096"),
    ("CENSUS_PAYLOAD_LOG_FILES", "0", "greater than or equal to 1"),
    ("CENSUS_PAYLOAD_LOG_FILES", "1001", "less than or equal to 1000"),
    ("CENSUS_PAYLOAD_QUEUE", "0", "greater than or equal to 1"),
    ("CENSUS_SHADOW_MODEL_VERSION", "latest", "should match pattern"),
])
def test_out_of_bounds_is_refused_naming_the_variable(monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=rf"^{name}='{value}' cannot be used: .*{words}"):
        read_settings({name: value})


def test_a_misspelt_setting_is_named_with_the_right_one():
    with pytest.raises(SettingsError, match="CENSUS_PAYLOAD_LOGS is not a setting: did you mean CENSUS_PAYLOAD_LOG"):
        read_settings({"CENSUS_PAYLOAD_LOGS": "x"})


def test_every_new_setting_is_a_field():
    assert {"payload_log", "payload_log_max_bytes", "payload_log_files", "payload_queue", "shadow_model_dir",
            "shadow_model_version"} <= set(Settings.model_fields)
