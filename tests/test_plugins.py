"""Plugin discovery: entry points, broken plugins, strict mode, disabling, collisions, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ganforge.plugins import ConfigError, PluginError, get_registry, load_registry

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
    assert "objectives  (ganforge 0.1.0" in out.stdout
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


def test_disabling_a_first_party_plugin_says_what_went_and_unknown_names_warn(monkeypatch, capsys):
    from ganforge import plugins

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
