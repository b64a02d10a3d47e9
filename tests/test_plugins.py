"""Plugin discovery: entry points, broken plugins, strict mode, disabling, collisions, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ganforge.registry.errors import ConfigError, PluginError
from ganforge.registry.registry import get_registry, load_registry

BROKEN = {"broken_mod": "raise ImportError('this plugin is broken on purpose')\n"}
DUPLICATE = {
    "dup_mod": """
        from ganforge import hookimpl, Objective

        class Mine(Objective):
            pass

        @hookimpl
        def ganforge_register_objectives(register):
            register("hinge", Mine, description="a second hinge")
    """
}
TYPED = {
    "typed_mod": """
        from __future__ import annotations
        from typing import Literal, Optional
        from ganforge import hookimpl, Objective

        class Typed(Objective):
            weight_clip = None

            def __init__(self, scale: float = 1.0, mode: Literal["a", "b"] = "a", clip: Optional[float] = None):
                self.scale, self.mode, self.clip = scale, mode, clip

        @hookimpl
        def ganforge_register_objectives(register):
            register("typed-objective", Typed)
    """
}


def test_first_party_components_come_through_entry_points():
    reg = load_registry(warn=False)
    dists = {p.name: p.distribution for p in reg.plugins}
    assert dists["objectives"] == "ganforge" and dists["relativistic"] == "ganforge-relativistic"
    assert {"minimax", "non-saturating", "wgan", "wgan-gp", "hinge", "lsgan"} <= set(reg.names("objective"))
    assert {"gaussian-ring", "gaussian-grid", "tensor-file"} <= set(reg.names("dataset"))
    assert "mode-coverage" in reg.names("metric")
    assert reg.get("objective", "relativistic").distribution == "ganforge-relativistic"


def test_broken_plugin_is_reported_and_others_keep_working(fake_plugins, capsys):
    fake_plugins("ganforge-broken", BROKEN, {"broken": "broken_mod"})
    reg = load_registry()
    err = capsys.readouterr().err
    assert "plugin 'broken' (ganforge-broken 0.0.1) failed to load: ImportError: this plugin is broken on purpose" in err
    assert [f.name for f in reg.failures] == ["broken"]
    assert reg.failures[0].distribution == "ganforge-broken"
    assert "non-saturating" in reg.names("objective")  # the rest still works


def test_strict_plugins_makes_a_broken_plugin_fatal(fake_plugins, monkeypatch):
    fake_plugins("ganforge-broken", BROKEN, {"broken": "broken_mod"})
    with pytest.raises(PluginError, match=r"plugin 'broken' from ganforge-broken 0.0.1 failed to load.*GANFORGE_DISABLE_PLUGINS=broken"):
        load_registry(strict=True)
    monkeypatch.setenv("GANFORGE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        load_registry()


def test_disable_plugins_skips_them(fake_plugins, monkeypatch):
    fake_plugins("ganforge-broken", BROKEN, {"broken": "broken_mod"})
    monkeypatch.setenv("GANFORGE_DISABLE_PLUGINS", "broken, relativistic")
    reg = load_registry(strict=True)
    assert not reg.failures
    assert "relativistic" not in reg.names("objective")


def test_two_registrations_of_one_name_fail_naming_both(fake_plugins):
    fake_plugins("ganforge-dup", DUPLICATE, {"dup": "dup_mod"})
    with pytest.raises(PluginError) as exc:
        load_registry(warn=False)
    msg = str(exc.value)
    assert "objective 'hinge' is registered twice" in msg
    assert "plugin 'objectives' (ganforge" in msg and "plugin 'dup' (ganforge-dup)" in msg


def test_signature_is_the_schema_even_with_future_annotations(fake_plugins):
    fake_plugins("ganforge-typed", TYPED, {"typed": "typed_mod"})
    reg = load_registry(warn=False)
    obj = reg.build("objective", {"name": "typed-objective", "scale": "2.5", "mode": "b"})
    assert obj.scale == 2.5 and obj.mode == "b"
    with pytest.raises(ConfigError, match=r"objective.mode: expected 'a' \| 'b', got 'c'"):
        reg.build("objective", {"name": "typed-objective", "mode": "c"})
    with pytest.raises(ConfigError, match=r"objective.clip: expected float \| null, got 'x'"):
        reg.build("objective", {"name": "typed-objective", "clip": "x"})


def test_unknown_component_suggests_close_names():
    reg = get_registry()
    with pytest.raises(ConfigError, match=r"objective.name: unknown objective 'wgan_gp'. Did you mean 'wgan-gp'"):
        reg.get("objective", "wgan_gp", "objective.name")


def test_cli_plugins_lists_components_parameters_and_failures(tmp_path):
    from conftest import make_fake_distribution

    site = make_fake_distribution(tmp_path / "site", "ganforge-broken", BROKEN, {"broken": "broken_mod"})
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-m", "ganforge", "plugins"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "objectives  (ganforge 0.2.0" in out.stdout
    assert "relativistic  (ganforge-relativistic 0.1.0" in out.stdout
    assert "gp_weight: float = 10.0" in out.stdout
    assert "FAILED to load:" in out.stdout
    assert "broken  (ganforge-broken 0.0.1): load: ImportError: this plugin is broken on purpose" in out.stdout
    js = subprocess.run([sys.executable, "-m", "ganforge", "plugins", "--json"], env=env, capture_output=True,
                        text=True, timeout=120)
    report = json.loads(js.stdout)
    assert report["failed"][0]["distribution"] == "ganforge-broken"
    strict = subprocess.run([sys.executable, "-m", "ganforge", "fit", "--strict-plugins"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert strict.returncode == 2
    assert "plugin 'broken' from ganforge-broken 0.0.1 failed to load" in strict.stderr


# -- plugins that misbehave (issue 11) ----------------------------------------------------------------

GOOD = {
    "good_mod": """
        from typing import Annotated
        from ganforge import hookimpl, Objective
        from ganforge.registry.bounds import Positive

        class Good(Objective):
            def __init__(self, k: Annotated[int, Positive] = 1):
                self.k = k

        @hookimpl
        def ganforge_register_objectives(register):
            register("good-objective", Good)
    """
}
MISSPELT = {
    "misspelt_mod": """
        from ganforge import hookimpl

        @hookimpl
        def ganforge_register_objective(register):
            register("never-seen", object)
    """
}
EXITS = {"exits_mod": "import sys\nsys.exit(3)\n"}
SCHEMAS = {
    "schemas_mod": """
        from pathlib import Path
        from typing import Optional
        from ganforge import hookimpl, Objective

        class WithComplex(Objective):
            def __init__(self, z: complex = 1j):
                pass

        class NoneForFloat(Objective):
            def __init__(self, scale: float = None):
                pass

        class WithPath(Objective):
            def __init__(self, where: Path = Path("stats") / "cache", other: Optional[Path] = None):
                self.where, self.other = where, other

        @hookimpl
        def ganforge_register_objectives(register):
            register("complex-objective", WithComplex)
            register("none-for-float", NoneForFloat)
            register("path-objective", WithPath)
    """
}
DEEP = {
    "deep_mod": """
        import json
        from ganforge import hookimpl

        def read_settings():
            return json.loads("{not json")

        @hookimpl
        def ganforge_register_metrics(register):
            read_settings()
    """,
}


def test_misspelt_hook_is_a_plugin_failure_naming_the_hook_and_its_line(fake_plugins):
    root = fake_plugins("ganforge-misspelt", MISSPELT, {"misspelt": "misspelt_mod"})
    fake_plugins("ganforge-good", GOOD, {"good": "good_mod"})
    reg = load_registry(warn=False)
    assert [f.name for f in reg.failures] == ["misspelt"]
    err = reg.failures[0].error
    assert "'ganforge_register_objective' is not a ganforge hook; did you mean 'ganforge_register_objectives'?" in err
    assert f"(at {root / 'misspelt_mod.py'}:4)" in err  # the line of the misspelt function
    assert "good-objective" in reg.names("objective")  # the correctly spelt plugin next to it works
    assert "misspelt" not in [p.name for p in reg.plugins]
    with pytest.raises(PluginError, match=r"plugin 'misspelt' .* is not a ganforge hook"):
        load_registry(strict=True)


def test_constraints_in_a_plugin_signature_are_checked_and_listed(fake_plugins):
    fake_plugins("ganforge-good", GOOD, {"good": "good_mod"})
    reg = load_registry(warn=False)
    assert reg.build("objective", {"name": "good-objective", "k": 2}).k == 2
    with pytest.raises(ConfigError, match=r"^objective.k: must be > 0, got 0\.$"):
        reg.build("objective", {"name": "good-objective", "k": 0})
    from ganforge.cli.commands import plugins_report

    good = next(p for p in plugins_report(reg)["plugins"] if p["name"] == "good")
    assert good["components"][0]["parameters"][0]["type"] == "int (> 0)"


def test_sys_exit_at_import_is_a_failure_and_the_cli_keeps_working(tmp_path):
    from conftest import make_fake_distribution

    site = make_fake_distribution(tmp_path / "site", "ganforge-exits", EXITS, {"exits": "exits_mod"})
    make_fake_distribution(site, "ganforge-good", GOOD, {"good": "good_mod"})
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-m", "ganforge", "plugins"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "good  (ganforge-good 0.0.1" in out.stdout and "objectives  (ganforge 0.2.0" in out.stdout
    assert (f"exits  (ganforge-exits 0.0.1): load: SystemExit: the plugin called sys.exit(3) "
            f"(at {site / 'exits_mod.py'}:2)") in out.stdout
    show = subprocess.run([sys.executable, "-m", "ganforge", "config", "show", "train.max_steps=5"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert show.returncode == 0 and "max_steps: 5" in show.stdout
    assert "plugin 'exits' (ganforge-exits 0.0.1) failed to load: SystemExit" in show.stderr
    strict = subprocess.run([sys.executable, "-m", "ganforge", "config", "show", "--strict-plugins"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert "ganforge: error: plugin 'exits' from ganforge-exits 0.0.1 failed to load: SystemExit" in strict.stderr


def test_parameters_a_config_cannot_express_are_refused_at_registration_and_paths_work(fake_plugins, tmp_path):
    from pathlib import Path

    from ganforge.run.config import dump, load_config

    root = fake_plugins("ganforge-schemas", SCHEMAS, {"schemas": "schemas_mod"})
    reg = load_registry(warn=False)
    errors = sorted(f.error for f in reg.failures)
    assert len(errors) == 2 and all(f.name == "schemas" for f in reg.failures)
    assert ("register objectives: objective 'complex-objective': parameter 'z: complex' cannot be given in a "
            f"YAML config") in errors[0] and f"(at {root / 'schemas_mod.py'}:6)" in errors[0]
    assert ("objective 'none-for-float': parameter 'scale': its default None is not a float "
            f"(at {root / 'schemas_mod.py'}:10)") in errors[1]
    assert "complex-objective" not in reg.names("objective")
    # Path is supported: a string in YAML, a Path in the factory, and the default survives config.yaml
    cfg = load_config(None, ["objective.name=path-objective"], reg)
    assert cfg["objective"]["where"] == str(Path("stats") / "cache") and cfg["objective"]["other"] is None
    assert "where: stats/cache" in dump(cfg)
    obj = reg.build("objective", cfg["objective"])
    assert obj.where == Path("stats/cache") and obj.other is None
    obj = reg.build("objective", {"name": "path-objective", "other": str(tmp_path)})
    assert obj.other == tmp_path
    with pytest.raises(ConfigError, match=r"objective.where: expected path, got 3 \(int\)"):
        reg.build("objective", {"name": "path-objective", "where": 3})
    with pytest.raises(PluginError, match=r"plugin 'schemas' .* failed to register objectives: objective 'complex"):
        load_registry(strict=True)


def test_plugin_failure_names_the_file_and_line_of_the_plugins_own_code(fake_plugins, capsys):
    root = fake_plugins("ganforge-deep", DEEP, {"deep": "deep_mod"})
    fake_plugins("ganforge-broken", BROKEN, {"broken": "broken_mod"})
    reg = load_registry()
    err = capsys.readouterr().err
    failures = {f.name: f.error for f in reg.failures}
    # the last frame inside the plugin's own code (json's frames come after it; pluggy's and ganforge's before)
    where = f"(at {root / 'deep_mod.py'}:6)"
    assert failures["deep"].startswith("register metrics: JSONDecodeError: Expecting property name")
    assert failures["deep"].endswith(where)
    assert f"plugin 'deep' (ganforge-deep 0.0.1) failed to register metrics: JSONDecodeError" in err and where in err
    assert failures["broken"].endswith(f"(at {root.parent / 'site_ganforge-broken' / 'broken_mod.py'}:1)")


FACTORY = {
    "badgen_mod": """
        from ganforge import hookimpl

        def bad_generator(width: int = 8):
            return {"not": "a module"}

        @hookimpl
        def ganforge_register_generators(register):
            register("dict-generator", bad_generator)
    """
}


def test_factory_returning_an_invalid_component_is_a_one_line_cli_error(tmp_path):
    from conftest import make_fake_distribution

    site = make_fake_distribution(tmp_path / "site", "ganforge-badgen", FACTORY, {"badgen": "badgen_mod"})
    env = dict(os.environ, PYTHONPATH=str(site), GANFORGE_PROGRESS="0")
    common = ["train.max_steps=2", "metrics.every_n_steps=0", "metrics.list.0.num_samples=100",
              "dataset.num_samples=256", f"root_dir={tmp_path / 'runs'}"]
    bad = subprocess.run([sys.executable, "-m", "ganforge", "fit", "generator.name=dict-generator", *common],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert bad.stderr.strip().splitlines()[-1] == (
        "ganforge: error: generator 'dict-generator' (from plugin 'badgen' (ganforge-badgen 0.0.1)) is invalid: "
        "expected a torch.nn.Module, got dict")
    good = subprocess.run([sys.executable, "-m", "ganforge", "fit", "generator.name=mlp", *common],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert good.returncode == 0, good.stderr[-2000:]


def test_disabling_a_first_party_plugin_says_what_went_and_unknown_names_warn(monkeypatch, capsys):
    from ganforge.registry import registry as plugins

    monkeypatch.setattr(plugins, "_ANNOUNCED", set())
    monkeypatch.setenv("GANFORGE_DISABLE_PLUGINS", "mixtures,relativistc")
    reg = load_registry()
    err = capsys.readouterr().err
    assert "gaussian-ring" not in reg.names("dataset")
    assert "first-party plugin 'mixtures' disabled (dataset gaussian-ring, dataset gaussian-grid)" in err
    assert "names no installed plugin: 'relativistc' (did you mean 'relativistic'?)" in err
    assert "plugins are: " in err and "mlp" in err.split("plugins are: ")[1]
    load_registry()  # said once per process
    assert capsys.readouterr().err == ""


def test_metric_results_are_checked_value_by_value():
    import numpy as np
    import torch

    from ganforge.contract.components import ComponentError
    from ganforge.evaluation.core import metric_values

    where = "metrics.list[0] (metric 'm' from plugin 'p')"
    good = {"a": 1, "b": 2.5, "c": torch.tensor(3.0), "d": np.float32(4.0), "e": torch.ones(1, 1), "f": float("nan")}
    out = metric_values(good, where)
    assert out["a"] == 1.0 and out["c"] == 3.0 and out["e"] == 1.0 and out["f"] != out["f"]
    assert all(type(v) is float for v in out.values())
    for bad, what in [(None, "returned NoneType None"), ([1.0], "returned list [1.0]"),
                      ({"a": torch.zeros(2)}, "returned 'a' with shape (2,), not a scalar"),
                      ({"a": "high"}, "returned 'a' = 'high' (str), not a number"),
                      ({"a": True}, "returned 'a' = True (bool), not a number"),
                      ({1: 2.0}, "returned key 1 (int), not a string name")]:
        with pytest.raises(ComponentError) as exc:
            metric_values(bad, where)
        assert str(exc.value) == f"{where}: compute() {what}; expected a dict of name → number."
    # during training the message goes on with where training stopped (tests/test_cli.py checks it end to end)


# -- the plugin API version (issue 8) -------------------------------------------------------------------

OLD_API = {
    "old_mod": """
        from ganforge import hookimpl, Objective

        GANFORGE_PLUGIN_API = 1

        class Old(Objective):
            pass

        @hookimpl
        def ganforge_register_objectives(register):
            raise AssertionError("the registry must not call a plugin built for another API")
    """
}
UNDECLARED = {
    "undeclared_mod": """
        from ganforge import hookimpl, Objective

        class Quiet(Objective):
            pass

        @hookimpl
        def ganforge_register_objectives(register):
            register("quiet", Quiet)
    """
}
MOVED_MODULE = {"moved_mod": "from ganforge.plugins import ConfigError  # 0.1's module\n"}


def test_plugin_built_for_another_api_is_refused_by_name_and_the_rest_load(fake_plugins, capsys):
    fake_plugins("ganforge-old", OLD_API, {"old": "old_mod"})
    reg = load_registry()
    err = capsys.readouterr().err
    assert [f.name for f in reg.failures] == ["old"]
    assert "plugin 'old' (ganforge-old 0.0.1) failed to load: built for ganforge plugin API 1, but ganforge" in err
    assert "speaks API 2" in err and "pip install -U ganforge-old" in err and "GANFORGE_PLUGIN_API = 2" in err
    assert "non-saturating" in reg.names("objective") and "old" not in [p.name for p in reg.plugins]
    with pytest.raises(PluginError, match=r"plugin 'old' from ganforge-old 0.0.1 failed to load: built for ganforge "
                                          r"plugin API 1.*GANFORGE_DISABLE_PLUGINS=old"):
        load_registry(strict=True)


def test_plugin_declaring_no_api_loads_as_current_with_a_warning_once(fake_plugins, capsys):
    from ganforge.registry import registry as plugins

    plugins._WARNED_UNDECLARED.clear()
    fake_plugins("ganforge-quiet", UNDECLARED, {"quiet": "undeclared_mod"})
    reg = load_registry()
    load_registry()
    err = capsys.readouterr().err
    line = ("plugin 'quiet' (ganforge-quiet 0.0.1) does not declare the plugin API it was built for; loaded as API 2. "
            "Its author should add `GANFORGE_PLUGIN_API = 2` to module 'undeclared_mod'.")
    assert err.count(line) == 1, err
    assert "quiet" in reg.names("objective") and not reg.failures
    assert {p.name: p.api for p in reg.plugins}["quiet"] is None
    assert load_registry(strict=True).get("objective", "quiet")  # a warning, not a failure, in strict mode too


def test_plugin_importing_a_module_0_1_had_is_told_it_was_built_for_api_1(fake_plugins):
    fake_plugins("ganforge-moved", MOVED_MODULE, {"moved": "moved_mod"})
    reg = load_registry(warn=False)
    assert reg.failures[0].name == "moved"
    assert ("has no module 'ganforge.plugins': the plugin was probably built for plugin API 1 (ganforge 0.1)"
            in reg.failures[0].error)


def test_every_first_party_plugin_declares_the_current_api():
    from ganforge.contract.hookspecs import PLUGIN_API

    reg = load_registry(warn=False)
    first_party = [p for p in reg.plugins if p.distribution.startswith("ganforge")]
    assert len(first_party) >= 10 and not reg.failures
    assert {p.name: p.api for p in first_party} == {p.name: PLUGIN_API for p in first_party}


def test_cli_plugins_shows_each_plugins_api_and_the_refused_one_by_name(tmp_path):
    from conftest import make_fake_distribution

    site = make_fake_distribution(tmp_path / "site", "ganforge-old", OLD_API, {"old": "old_mod"})
    quiet = make_fake_distribution(tmp_path / "quiet", "ganforge-quiet", UNDECLARED, {"quiet": "undeclared_mod"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(quiet)]))
    out = subprocess.run([sys.executable, "-m", "ganforge", "plugins"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "objectives  (ganforge " in out.stdout and "module ganforge_plugins.objectives.losses, plugin API 2)" in out.stdout
    assert "quiet  (ganforge-quiet 0.0.1, module undeclared_mod, declares no plugin API, loaded as 2)" in out.stdout
    assert "old  (ganforge-old 0.0.1): load: built for ganforge plugin API 1" in out.stdout
    js = json.loads(subprocess.run([sys.executable, "-m", "ganforge", "plugins", "--json"], env=env,
                                   capture_output=True, text=True, timeout=120).stdout)
    assert {p["name"]: p["api"] for p in js["plugins"]}["objectives"] == 2
    strict = subprocess.run([sys.executable, "-m", "ganforge", "plugins", "--strict-plugins"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert "plugin 'old' from ganforge-old 0.0.1 failed to load: built for ganforge plugin API 1" in strict.stderr


# -- the hook reference in docs/plugins.md is generated from hookspecs.py ------------------------------


def test_hook_reference_in_docs_is_current_and_documents_every_kind():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(repo, "scripts", "hooks_reference.py")
    out = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + " (run `python scripts/hooks_reference.py`)"
    from ganforge.contract import hookspecs

    doc = open(os.path.join(repo, "docs", "plugins.md"), encoding="utf-8").read()
    for kind, hook in hookspecs.KINDS.items():
        assert f"- **{kind.replace('_', ' ')}** — `{hook}(register)`: " in doc


def test_hook_reference_check_fails_on_a_stale_section(tmp_path, monkeypatch):
    import importlib.util

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("hooks_reference", os.path.join(repo, "scripts", "hooks_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fresh = mod.rewrite(open(mod.DOC, encoding="utf-8").read())
    stale = tmp_path / "plugins.md"
    stale.write_text(fresh.replace("`ganforge_register_objectives(register)`", "`ganforge_register_objective(register)`"))
    monkeypatch.setattr(mod, "DOC", stale)
    assert mod.main(["--check"]) == 1
    assert mod.main([]) == 0 and stale.read_text() == fresh  # rewriting restores it
    stale.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="the markers are missing"):
        mod.main(["--check"])
