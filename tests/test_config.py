"""The env-file parser must read what python-dotenv reads (we skip its import for speed)."""

from pathlib import Path

import pytest
from dotenv import dotenv_values

from cloudprovisioner import config as configuration

ROOT = Path(__file__).resolve().parents[1]

TRICKY = """
# a comment
export CP_DB_HOST=db.example  # trailing comment
CP_DB_NAME='single # not a comment'
CP_DB_USER="double \\"quoted\\" value"
CP_DB_PASSWORD=  spaced out
CP_DO_TOKEN=abc#def
CP_PLATFORM_TAG=
"""


def test_example_file_reads_as_python_dotenv_reads_it():
    path = ROOT / "etc" / "cloudprovisioner.env.example"
    ours = configuration.parse_env_file(path.read_text())
    assert ours == {k: v or "" for k, v in dotenv_values(path).items()}
    assert set(ours) == set(configuration.DEFAULTS), "the example must explain every key"


def test_tricky_lines_read_as_python_dotenv_reads_them(tmp_path):
    path = tmp_path / "x.env"
    path.write_text(TRICKY)
    expected = {k: v or "" for k, v in dotenv_values(path, interpolate=False).items()}
    assert configuration.parse_env_file(TRICKY) == expected


def test_environment_overrides_file_and_only_cp_keys_count(tmp_path):
    path = tmp_path / "x.env"
    path.write_text("CP_DB_HOST=from-file\nCP_DB_PORT=3307\n")
    config = configuration.load(environ={"CP_DB_HOST": "from-env", "HTTP_CP_DB_PORT": "1"}, path=str(path))
    assert config.db_host == "from-env"
    assert config.db_port == 3307


def test_missing_required_and_bad_values_are_clear_errors(tmp_path):
    path = tmp_path / "x.env"
    path.write_text("CP_DB_PORT=abc\nCP_NOPE=1\n")
    with pytest.raises(configuration.ConfigError, match="unknown keys CP_NOPE"):
        configuration.load(environ={}, path=str(path))
    path.write_text("CP_DB_PORT=abc\n")
    config = configuration.load(environ={}, path=str(path))
    with pytest.raises(configuration.ConfigError, match="CP_DB_PORT must be a whole number"):
        _ = config.db_port
    with pytest.raises(configuration.ConfigError, match="CP_DB_PASSWORD is not set"):
        _ = config.db_password
    with pytest.raises(configuration.ConfigError, match="cannot read"):
        configuration.load(environ={}, path=str(tmp_path / "missing.env"))
