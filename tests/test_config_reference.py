"""One source of defaults: the schema; `synccp config`, the README table and --version follow it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import synccp
from synccp.cli import main
from synccp.config import Config, config_to_dict, load_config
from synccp.config_reference import MEANINGS, reference

ROOT = Path(__file__).resolve().parents[1]


def test_every_key_has_a_meaning_and_no_stale_meaning_remains():
    keys = {f"{s}.{k}" for s, table in config_to_dict(Config()).items() for k in table}
    assert keys == set(MEANINGS)


def test_readme_table_is_the_generated_reference():
    readme = (ROOT / "README.md").read_text()
    table = re.search(
        r"<!-- config-reference:start -->\n(.*?)\n<!-- config-reference:end -->", readme, re.S
    )
    assert table, "README.md lacks the generated config table markers"
    assert table.group(1) == reference("markdown"), "regenerate: python tools/readme_config.py"


def test_a_toml_without_sparsity_runs_what_the_no_argument_run_runs(tmp_path):
    """The issue: the README said dense, `synccp pretrain` ran SyncCP, a TOML without
    [sparsity] silently trained dense."""
    path = tmp_path / "c.toml"
    path.write_text('[method]\nname = "simclr"\n')
    assert load_config(path).sparsity.algorithm == load_config(None).sparsity.algorithm == "synccp"
    assert Config().sparsity.algorithm == "synccp"
    assert '| `sparsity.algorithm` | `"synccp"` |' in reference("markdown")


def test_toml_reference_parses_back_to_the_defaults():
    from synccp.config import config_from_dict, tomllib

    assert config_to_dict(config_from_dict(tomllib.loads(reference("toml")))) == config_to_dict(
        config_from_dict({})
    )


def test_version_flag_and_config_command(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert (
        stop.value.code == 0 and capsys.readouterr().out.strip() == f"synccp {synccp.__version__}"
    )
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "sparsity.algorithm" in out and "eval.subset" in out and "train.loggers" in out


def test_pretrain_help_points_at_the_reference(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert "synccp config" in capsys.readouterr().out


def test_python_310_reads_toml_through_tomli(tmp_path):
    """requires-python >= 3.10: without the stdlib tomllib the config falls back to tomli."""
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 3\n")
    code = (
        "import sys; sys.modules['tomllib'] = None; sys.version_info = (3, 10, 0, 'final', 0)\n"
        "import synccp.config as c\n"
        f"assert c.tomllib.__name__ == 'tomli'; assert c.load_config({str(path)!r}).train.epochs "
        f"== 3.0"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src")},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
