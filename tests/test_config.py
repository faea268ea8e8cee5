"""Config schema: defaults resolve, overrides parse, bad input names the key and the value."""

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synccp.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    load_resolved,
    normalized_config_dict,
    save_config,
)

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_default_is_simclr_synccp_on_all_of_fashion_mnist():
    cfg = load_config()
    assert (cfg.data.name, cfg.data.subset, cfg.method.name, cfg.sparsity.algorithm) == (
        "fashion_mnist",
        0,
        "simclr",
        "synccp",
    )
    assert cfg.method.temperature is not None and cfg.method.proj_hidden_dim is not None  # resolved


def test_the_demo_is_the_simclr_synccp_cell_of_the_cpu_protocol():
    """`make demo` runs one cell of the committed study grid, seed 0 (docs/results.md)."""
    cell = _protocol_cell("simclr_synccp_s0_")
    assert _run_keys(cell.resolved) == _run_keys(config_to_dict(load_config(None, [])))


def test_the_machine_check_runs_the_protocol_cells_unchanged():
    """configs/grids/machine_check.toml re-runs study cells on another machine: same configs."""
    from synccp.grid import load_grid, plan

    cells = plan(load_grid(ROOT / "configs" / "grids" / "machine_check.toml"))
    assert [c.name.rsplit("_", 1)[0] for c in cells] == [
        "simclr_dense_s0", "simclr_dense_s1", "simclr_dense_s2", "byol_nm_synccp_s0"]
    for cell in cells:
        protocol = _protocol_cell(cell.name)
        assert protocol.name == cell.name  # same resolved config, hence the same name
        assert _run_keys(cell.resolved) == _run_keys(protocol.resolved)


def _protocol_cell(prefix: str):
    """The cell of configs/grids/cpu_protocol.toml whose name starts with `prefix`."""
    from synccp.grid import load_grid, plan

    grid = load_grid(ROOT / "configs" / "grids" / "cpu_protocol.toml")
    return next(c for c in plan(grid) if c.name.startswith(prefix))


def _run_keys(config: dict, sections=("data", "model", "method", "train", "sparsity", "eval")):
    """The keys that decide what a run computes (the progress bar aside)."""
    return {s: {k: v for k, v in config[s].items() if k != "progress"} for s in sections}


def test_overrides_are_typed_and_applied(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[method]\nname = "simclr"\n[train]\nepochs = 3\n')
    cfg = load_config(
        path, ["train.epochs=50", "sparsity.granularity=nm", "sparsity.n=1", "train.progress=false"]
    )
    assert cfg.train.epochs == 50.0 and isinstance(cfg.train.epochs, float)
    assert (cfg.sparsity.granularity, cfg.sparsity.n, cfg.train.progress) == ("nm", 1, False)
    assert cfg.method.temperature is not None  # simclr default filled


def _ramp(cfg):
    from synccp.sparsity.schedule import ramp_epochs

    s = cfg.sparsity
    return ramp_epochs(
        start_epoch=s.start_epoch,
        end_epoch=s.end_epoch,
        ramp_start=s.ramp_start,
        ramp_end=s.ramp_end,
        epochs=cfg.train.epochs,
    )


def test_ramp_defaults_to_three_quarters_of_training_and_follows_the_length():
    cfg = config_from_dict({"train": {"epochs": 8}, "sparsity": {"algorithm": "gmp"}})
    assert _ramp(cfg) == (0.0, 6.0)
    for epochs in (1, 3, 40):  # changing the length of any preset just works (issue 13)
        for preset in (None, ROOT / "configs/byol.toml", ROOT / "configs/simclr.toml"):
            cfg = load_config(preset, [f"train.epochs={epochs}"])
            start, end = _ramp(cfg)
            assert 0 <= start <= end <= epochs and end == pytest.approx(0.75 * epochs)


def test_absolute_epochs_win_and_both_forms_are_refused():
    cfg = config_from_dict(
        {
            "train": {"epochs": 8},
            "sparsity": {"algorithm": "synccp", "start_epoch": 1, "ramp_end": 0.5},
        }
    )
    assert _ramp(cfg) == (1.0, 4.0)
    with pytest.raises(ConfigError, match="ramp_end.*end_epoch|not both"):
        config_from_dict({"sparsity": {"ramp_end": 0.5, "end_epoch": 2}})
    cfg = load_config(ROOT / "configs/byol.toml", ["sparsity.end_epoch=5"])  # an override
    # replaces the file's form
    assert cfg.sparsity.ramp_end is None and _ramp(cfg) == (1.0, 5.0)


def test_ramp_checked_only_for_algorithms_that_have_one():
    for algorithm in ("dense", "static", "rigl", "sdclr"):
        config_from_dict(
            {"train": {"epochs": 2}, "sparsity": {"algorithm": algorithm, "end_epoch": 99}}
        )
    with pytest.raises(ConfigError, match="sparsity.end_epoch=99"):
        config_from_dict(
            {"train": {"epochs": 2}, "sparsity": {"algorithm": "granet", "end_epoch": 99}}
        )


def test_a_gap_beyond_a_dense_second_branch_fails_at_the_boundary():
    config_from_dict({"sparsity": {"algorithm": "synccp", "density": 0.1, "density_gap": 0.9}})
    with pytest.raises(ConfigError, match="sparsity.density_gap=0.6"):
        config_from_dict(
            {"sparsity": {"algorithm": "synccp", "granularity": "nm", "density_gap": 0.6}}
        )


@pytest.mark.parametrize(
    "override, words",
    [
        ("sparsity.algorithm=magic", ["sparsity.algorithm", "magic"]),
        ("train.batch_size=abc", ["train.batch_size", "abc"]),
        ("train.batch_size=1.5", ["train.batch_size", "1.5"]),
        ("sparsity.density=1.5", ["sparsity.density", "1.5"]),
        ("sparsity.n=4", ["sparsity.n", "n=4", "m=4"]),
        ("train.nope=1", ["train.nope"]),
        ("bogus.key=1", ["bogus"]),
        ("sparsity.end_epoch=99", ["sparsity.end_epoch", "99"]),
        ("noequals", ["key=value", "noequals"]),
    ],
)
def test_bad_values_name_key_and_value(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for word in words:
        assert word in str(err.value)


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nepochs = 3")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["method.name=mocov2", "train.seed=7"])
    save_config(cfg, tmp_path / "config.json")
    assert load_resolved(tmp_path / "config.json") == cfg
    assert json.loads((tmp_path / "config.json").read_text()) == config_to_dict(cfg)


def test_an_older_stored_config_normalizes_to_todays_run():
    today = config_to_dict(load_config(None, ["train.seed=3"]))
    older = json.loads(json.dumps(today))
    del older["train"]["sync_bn"]  # a key added since: takes its default
    older["train"]["compile"] = False  # a key removed since, at its no-op value: dropped
    assert normalized_config_dict(older) == today
    assert older["train"]["compile"] is False  # the caller's dict is not changed
    assert older["train"].get("sync_bn") is None
    changed = json.loads(json.dumps(older))
    changed["train"]["compile"] = True  # it did something then: not the same run
    assert normalized_config_dict(changed) != today
    changed["train"]["compile"] = False
    changed["train"]["seed"] = 4
    assert normalized_config_dict(changed)["train"]["seed"] == 4


@settings(max_examples=60, deadline=None)
@given(
    section=st.sampled_from(["train", "sparsity", "data", "model", "eval"]),
    key=st.text(min_size=1, max_size=12),
    value=st.one_of(st.integers(), st.floats(), st.text(max_size=8), st.booleans()),
)
def test_arbitrary_input_either_loads_or_raises_config_error(section, key, value):
    try:
        config_from_dict({section: {key: value}})
    except ConfigError:
        pass


def test_the_default_demo_has_a_recorded_dense_reference_and_other_configs_do_not():
    from synccp.cli import dense_reference

    reference = dense_reference(load_config(None, []))
    assert (
        reference is not None
        and 0 < reference["knn_top1"] < 100
        and 0 < reference["linear_top1"] < 100
    )
    assert reference["config"]["method"]["name"] == "simclr" and "seed 0" in reference["source"]
    assert dense_reference(load_config(None, ["model.width=16"])) is None
    assert dense_reference(load_config(None, ["train.seed=1"])) is None


def test_the_demo_reference_is_the_committed_study_run_it_names():
    """The figures printed beside the demo are those of the dense protocol run in the study folder,
    with the demo's config: evidence anyone can regenerate, not a number typed in."""
    from synccp.cli import dense_reference

    reference = dense_reference(load_config(None, []))
    run = ROOT / _protocol_cell("simclr_dense_s0_").run_dir  # the grid's out is repo-relative
    assert run.name.rsplit("_", 1)[0] in reference["source"]
    # as this version reads it: keys added since (train.compile) at the values that reproduce it
    stored = normalized_config_dict(json.loads((run / "config.json").read_text()))
    demo = config_to_dict(load_config(None, ["sparsity.algorithm=dense"]))
    sections = ("data", "model", "method", "train", "eval")
    assert _run_keys(stored, sections) == _run_keys(demo, sections)
    encoder = json.loads((run / "eval.json").read_text())["encoder"]
    assert reference["knn_top1"] == round(encoder["knn_top1"], 2)
    assert reference["linear_top1"] == round(encoder["linear_top1"], 2)


def test_the_demo_prints_its_dense_reference_in_aligned_columns():
    from synccp.cli import _format_eval

    result = {
        "encoder": {"knn_top1": 71.1, "linear_top1": 77.98},
        "online_density": 0.1,
        "raw_pixels": {"knn_top1": 81.78, "linear_top1": 84.1},
    }
    lines = _format_eval(result, load_config(None, [])).splitlines()
    reference = next(line for line in lines if line.startswith("dense reference"))
    assert reference.endswith("83.01%        84.79%")
    assert len({len(line) for line in lines[:4]}) == 1  # header and three rows line up
    assert max(len(line) for line in lines[:4]) <= 80  # the source is a line of its own
    assert any(line.startswith("dense reference: dense, seed 0, studies/") for line in lines)


@pytest.mark.parametrize(
    "method, key",
    [
        ("simclr", "queue_size"),
        ("byol", "temperature"),
        ("barlow", "base_tau"),
        ("simsiam", "lambda_offdiag"),
    ],
)
def test_a_key_of_another_method_is_refused_naming_key_method_and_its_options(method, key):
    from synccp.methods import method_defaults

    with pytest.raises(ConfigError) as err:
        load_config(None, [f"method.name={method}", f"method.{key}=1"])
    text = str(err.value)
    assert f"method.{key}" in text and repr(method) in text
    assert all(option in text for option in method_defaults(method))


def test_every_method_key_belongs_to_a_method_and_defaults_only_its_own():
    from synccp.config import MethodConfig
    from synccp.methods import METHODS

    keys = {f.name for f in dataclasses.fields(MethodConfig)} - {"name"}
    assert keys == set().union(*(row.options for row in METHODS.values()))
    for name, row in METHODS.items():
        resolved = dataclasses.asdict(load_config(None, [f"method.name={name}"]).method)
        assert {k for k, v in resolved.items() if v is not None} == {"name", *row.options}


def test_a_stored_run_with_another_methods_key_loads_with_a_warning(tmp_path, caplog):
    cfg = load_config(None, ["method.name=simclr", "train.seed=5"])
    stored = config_to_dict(cfg)
    stored["method"]["queue_size"] = 64  # written, unused, by versions before issue 12
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with caplog.at_level("WARNING"):
        assert load_resolved(tmp_path / "config.json") == cfg
        assert normalized_config_dict(stored) == config_to_dict(cfg)
        assert load_config(tmp_path / "config.json") == cfg  # a run's config.json as --config
    assert "method.queue_size" in caplog.text and "ignored" in caplog.text
    with pytest.raises(ConfigError, match="queue_size"):  # set by a user: an error
        load_config(tmp_path / "config.json", ["method.temperature=0.5", "method.queue_size=8"])


def _outside(key):
    from synccp.config import RANGES

    bound = RANGES[key]
    return int(bound.low - 1 if bound.high == float("inf") or bound.low > 0 else bound.high * 2 + 1)


@pytest.mark.parametrize("key", sorted(__import__("synccp.config", fromlist=["RANGES"]).RANGES))
def test_each_range_is_checked_in_one_place(key, monkeypatch):
    """Out of its range, a key fails in `checks.check_range`; with that one check switched off,
    loading the config raises no range error of the key (no second copy of the range)."""
    import synccp.config.checks as checks

    sets = [f"{key}={_outside(key)}"] + (
        ["method.name=mocov2"] if key == "method.queue_size" else []
    )
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, sets)
    monkeypatch.setattr(checks, "check_range", lambda key, value: None)
    try:  # may still fail: joint checks (density <= initial_density), or arithmetic on the value
        load_config(None, sets)
    except Exception as err:  # noqa: BLE001 - any error but a second range check of `key`
        assert f"{key} must be" not in str(err), f"a second check of {key}: {err}"


SPEC_OWNED = {
    "sparsity.score_ema": 1.0,
    "sparsity.update_every": 0,
    "sparsity.n": 4,
    "sparsity.density": 0.0,
    "sparsity.density_gap": 1.0,
    "sparsity.drop_fraction": 1.0,
}


@pytest.mark.parametrize("key", sorted(SPEC_OWNED))
def test_sparsity_ranges_are_checked_by_the_sparsity_spec_alone(key, monkeypatch):
    """The config reports `SparsitySpec`'s own error; with the spec's check switched off, the
    config has no copy of the range (score_ema, update_every, n < m were checked 2-3 times)."""
    from synccp.sparsity.spec import SparsitySpec

    sets = [f"{key}={SPEC_OWNED[key]}", "sparsity.initial_density=1.0"]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + " must be"):
        load_config(None, sets)
    monkeypatch.setattr(SparsitySpec, "__post_init__", lambda self: None)
    try:
        load_config(None, sets)
    except Exception as err:  # noqa: BLE001 - any error but a second range check of `key`
        assert f"{key} must be" not in str(err), f"a second check of {key}: {err}"


METHOD_OPTIONS = {"method.queue_size": ("mocov2", 2**21), "method.proj_output_dim": ("byol", 0),
                  "method.temperature": ("simclr", 0.0), "method.lambda_offdiag": ("barlow", -1.0),
                  "method.base_tau": ("byol", 1.5)}


@pytest.mark.parametrize("key", sorted(METHOD_OPTIONS))
def test_method_options_are_checked_by_the_methods_own_check(key, monkeypatch):
    """The config reports the error the method's constructor raises (`check_options`, one place):
    with that check switched off, the config has no copy of the range."""
    import synccp.methods.base as base
    from synccp.methods import build_method
    from synccp.models import build_backbone

    method, value = METHOD_OPTIONS[key]
    sets = [f"method.name={method}", f"{key}={value}"]
    with pytest.raises(ConfigError) as at_load:
        load_config(None, sets)
    with pytest.raises(ValueError) as at_build:
        build_method(method, build_backbone("resnet18", stem="cifar", width=4, in_channels=1),
                     **{key.split(".")[1]: value})
    assert str(at_load.value) == str(at_build.value) and key.split(".")[1] in str(at_load.value)
    monkeypatch.setattr(base, "check_options", lambda **values: None)
    load_config(None, sets)  # nothing else refuses it
