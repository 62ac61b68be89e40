"""The seed's ABTestingFramework API, including the seed guide's code run exactly as written."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import experiments
from aifx.settings import Settings
from experiments import (
    DEFAULT_DATABASE_URL,
    ABTestingFramework,
    Assignment,
    Conflict,
    NotFound,
    assign_variant,
    default_database_url,
)

pytest_plugins = ["tests.conftest_pg"]

# Verbatim from seed/ml-engine-deployment-guide.md, "A/B Testing" and "Troubleshooting / Issue 5".
SEED_CREATE = """
# Python
from ab_testing import ABTestingFramework

framework = ABTestingFramework()

experiment = framework.create_experiment(
    experiment_id='v30_vs_v31',
    name='Swing Point vs Profitable Logic',
    description='Compare model performance',
    variant_a='v3.0',
    variant_b='v3.1',
    traffic_split=0.5  # 50/50 split
)

framework.activate_experiment('v30_vs_v31')
"""

SEED_ASSIGN = """
# Same user always gets same variant
user_id = "user123"
model_version, exp_id = framework.get_model_version_for_user(user_id)
# user123 → v3.1 (always)
"""

SEED_RECORD = """
framework.record_prediction(
    experiment_id='v30_vs_v31',
    user_id='test_user',
    signal='long',
    confidence=0.75
)
"""


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory with no AIFX_DATABASE_URL (so the default SQLite file is used)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIFX_DATABASE_URL", raising=False)
    return tmp_path


@pytest.mark.unit
def test_seed_snippets_run_as_written(in_tmp_cwd: Path) -> None:
    namespace: dict = {}
    exec(SEED_CREATE, namespace)
    exec(SEED_ASSIGN, namespace)
    exec(SEED_RECORD, namespace)
    framework = namespace["framework"]
    try:
        assert (in_tmp_cwd / "var" / "aifx.db").is_file()
        assert namespace["experiment"]["experiment_id"] == "v30_vs_v31"
        salt = framework.store.get_experiment("v30_vs_v31")["salt"]  # a random secret: either variant
        expected = {"A": "v3.0", "B": "v3.1"}[assign_variant(salt, "user123", 0.5)]
        assert (namespace["model_version"], namespace["exp_id"]) == (expected, "v30_vs_v31")
        metrics = framework.get_metrics("v30_vs_v31")
        variant = assign_variant(salt, "test_user", 0.5)
        assert metrics["variants"][variant]["metrics"]["count"] == 1
        assert metrics["variants"][variant]["metrics"]["signals"]["long"] == 1
    finally:
        framework.close()


@pytest.mark.unit
def test_default_url_and_env_override(in_tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_database_url() == DEFAULT_DATABASE_URL == "sqlite:///var/aifx.db"
    assert Settings.model_fields["database_url"].default is DEFAULT_DATABASE_URL  # the service's, the same one
    url = f"sqlite:///{in_tmp_cwd / 'other' / 'x.db'}"
    monkeypatch.setenv("AIFX_DATABASE_URL", url)
    framework = ABTestingFramework()
    try:
        assert framework.store.url == url
        assert framework.list_experiments() == []  # the store opens its database on first use
        assert (in_tmp_cwd / "other" / "x.db").is_file()
        assert not (in_tmp_cwd / "var").exists()
    finally:
        framework.close()


@pytest.fixture
def framework(db_url: str) -> ABTestingFramework:
    fw = ABTestingFramework(db_url)
    yield fw
    fw.close()


def test_no_active_experiment_means_none(framework: ABTestingFramework) -> None:
    """Seed behaviour: without an active experiment the caller serves its own active version."""
    assert framework.get_model_version_for_user("user123") == (None, None)
    assert framework.assign("user123") is None
    framework.create_experiment("e", "n", "d", "v3.0", "v3.1")
    assert framework.get_model_version_for_user("user123") == (None, None)


def test_assignment_is_sticky_across_instances(framework: ABTestingFramework, db_url: str) -> None:
    framework.create_experiment("e", "n", "d", "v3.0", "v3.1", traffic_split=0.3)
    framework.activate_experiment("e")
    users = [f"user-{i}" for i in range(200)]
    first = [framework.get_model_version_for_user(u) for u in users]
    restarted = ABTestingFramework(db_url)
    try:
        assert [restarted.get_model_version_for_user(u) for u in users] == first
    finally:
        restarted.close()
    salt = framework.store.get_experiment("e")["salt"]
    for u, (version, eid) in zip(users, first, strict=True):
        assert eid == "e"
        assert version == ("v3.1" if assign_variant(salt, u, 0.3) == "B" else "v3.0")
    assert framework.assign(users[0]) == Assignment("e", assign_variant(salt, users[0], 0.3), first[0][0])


def test_record_prediction_derives_or_takes_variant(framework: ABTestingFramework) -> None:
    framework.create_experiment("e", "n", "d", "v3.0", "v3.1")
    framework.activate_experiment("e")
    derived = framework.record_prediction("e", "user123", "short", 0.6, stage1_prob=0.7, stage2_prob=0.3)
    explicit = framework.record_prediction("e", "user123", "hold", 0.55, variant="A", model_version="v3.0")
    by_variant = framework.record_prediction("e", "user123", "hold", 0.55, variant="A")
    store = framework.store
    expected = assign_variant(store.get_experiment("e")["salt"], "user123", 0.5)
    row = store.get_prediction(derived)
    assert (row["variant"], row["model_version"]) == (expected, {"A": "v3.0", "B": "v3.1"}[expected])
    assert (row["stage1_prob"], row["stage2_prob"]) == (0.7, 0.3)
    assert store.get_prediction(explicit)["model_version"] == "v3.0"
    assert store.get_prediction(by_variant)["model_version"] == "v3.0"
    with pytest.raises(NotFound):
        framework.record_prediction("missing", "u", "long", 0.5)


def test_full_flow(framework: ABTestingFramework) -> None:
    framework.set_active_version("v3.1")
    assert framework.get_active_version() == "v3.1"
    framework.create_experiment("e", "n", "d", "v3.0", "v3.1")
    assert framework.activate_experiment("e")["active"] is True
    assert framework.active_experiment()["experiment_id"] == "e"  # type: ignore[index]
    pid = framework.record_prediction("e", "u1", "long", 0.8)
    assert framework.record_outcome(pid, 4.0)["created"] is True
    assert framework.stop_experiment("e")["status"] == "stopped"
    with pytest.raises(Conflict):
        framework.stop_experiment("e")
    assert [e["experiment_id"] for e in framework.list_experiments()] == ["e"]
    assert framework.get_experiment("e")["status"] == "stopped"
    outcomes = [v["metrics"]["outcomes"]["count"] for v in framework.get_metrics("e")["variants"].values()]
    assert sum(outcomes) == 1


@pytest.mark.unit
def test_the_package_names_load_lazily_from_the_modules_type_checkers_see() -> None:
    """experiments/__init__.py: its TYPE_CHECKING imports and its lazy names are the same names, from the same
    modules, and every one resolves."""
    tree = ast.parse(Path(experiments.__file__).read_text())
    checked = {
        alias.name: node.module.removeprefix("experiments.")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("experiments.")
        for alias in node.names
    }
    assert checked == experiments._HOME
    for name, module in checked.items():
        assert getattr(experiments, name) is getattr(importlib.import_module(f"experiments.{module}"), name)
