"""Configuration: shipped defaults, TOML, environment overrides, and errors naming key, rule and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bandit_router.config import ConfigError, load_config

MODEL = (
    "[[models]]\nid={id!r}\ninput_usd_per_mtok=1\noutput_usd_per_mtok=1\nparameters_b=1\nenergy_j_per_input_token=0\n"
)


def test_defaults_load_with_the_shipped_catalog() -> None:
    config = load_config(env={})
    assert len(config.models) == 8
    assert config.redis.url == ""
    assert config.features.context == ("T",) and "--power_t" in config.policy.vw_args
    assert all(m.energy_profile_source for m in config.models)


def test_toml_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text(
        """
[reward]
wait_time_s = 60
energy_weight = 0.5

[catalog]
base = "empty"

[[models]]
id = "small"
input_usd_per_mtok = 0.1
output_usd_per_mtok = 0.2
parameters_b = 3
energy_j_per_output_token = 0.07
energy_j_per_input_token = 0.004
"""
    )
    env = {
        "BANDIT_ROUTER_REWARD_WAIT_TIME_S": "120",
        "REDIS_URL": "redis://example:6379/0",
        "BANDIT_ROUTER_POLICY_VW_ARGS": "--quiet -l 0.1",
        "BANDIT_ROUTER_FEATURES_CONTEXT": "T K",
    }
    config = load_config(path, env=env)
    assert config.reward.wait_time_s == 120.0
    assert config.reward.energy_weight == 0.5
    assert config.redis.url == "redis://example:6379/0"
    assert config.policy.vw_args == ("--quiet", "-l", "0.1")
    assert config.features.context == ("T", "K")
    assert [m.id for m in config.models] == ["small"]


@pytest.mark.parametrize(
    ("toml", "env", "match"),
    [
        ("[reward]\nwait_time_s = -1\n", {}, r"reward.wait_time_s must be a finite number > 0, got -1.0"),
        ("[reward]\nenergy_weight = nan\n", {}, r"reward.energy_weight must be a finite number >= 0, got nan"),
        ("[reward]\nwait_tiem_s = 5\n", {}, r"reward has unknown keys .*got \['wait_tiem_s'\]"),
        ("[nonsense]\n", {}, r"config has unknown sections .*got \['nonsense'\]"),
        ("", {"BANDIT_ROUTER_LIMITS_MAX_QUERY_CHARS": "lots"}, r"limits.max_query_chars must be a int, got 'lots'"),
        ("", {"BANDIT_ROUTER_NOPE_X": "1"}, r"BANDIT_ROUTER_NOPE_X must name a section"),
        ("[policy]\nvw_args = ['--cb_adf']\n", {}, r"policy.vw_args must not choose a reduction .*got \['--cb_adf'\]"),
        ("[policy]\nepsilon = 1.0\n", {}, r"policy.epsilon must be in \[0, 1\), got 1.0"),
        ("[policy]\nprior_strength = -2\n", {}, r"policy.prior_strength must be a finite number >= 0, got -2.0"),
        (
            '[[models]]\nid = "gemma-2-9b-it"\nbase_url = "gpu-node:8000"\n',
            {},
            r"models\[gemma-2-9b-it\].base_url must be empty or an http:// or https:// URL, got 'gpu-node:8000'",
        ),
        (
            '[[models]]\nid = "gemma-2-9b-it"\napi_key_env = "sk-proj-abcdef"\n',
            {},
            r"api_key_env must name an environment variable .*got 'sk-p\.\.\.'",
        ),
        ("[http]\nmax_attempts = 0\n", {}, r"http.max_attempts must be in \[1, 10\], got 0"),
        ("[reward]\nfailure_quality = 2\n", {}, r"reward.failure_quality must be in \[0, 1\], got 2.0"),
        (
            "[features]\ncontext = ['T', 'Q']\n",
            {},
            r"features.context must name namespaces among T \(task\).*got \['T', 'Q'\]",
        ),
        (
            "[features]\ncontext = ['E']\nprojection_dim = 0\n",
            {},
            r"features.context may name E only with features.projection_dim > 0, got \['E'\]",
        ),
        ("[embedding]\ndevice = 'gpu'\n", {}, r"embedding.device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        (
            "[embedding]\nbackend = 'tflite'\n",
            {},
            r"embedding.backend must be torch, onnx, onnx-int8 or static, got 'tflite'",
        ),
        (
            "",
            {"BANDIT_ROUTER_EMBEDDING_DTYPE": "fp8"},
            r"embedding.dtype must be auto, float32, float16 or bfloat16, got 'fp8'",
        ),
        (
            MODEL.format(id="a") + "energy_j_per_output_token=-1\n",
            {},
            r"models\[a\].energy_j_per_output_token must be a finite number >= 0, got -1.0",
        ),
        (
            MODEL.format(id="a b") + "energy_j_per_output_token=1\n",
            {},
            r"models.id must match .*got 'a b'",
        ),
        (
            "[[models]]\nid = 'gpt-4o'\ninput_usd_per_mtok = 2.5\n",
            {},
            r"models\[gpt-4o\] must have every required key, got 'missing output_usd_per_mtok'",
        ),
        ("[[models]]\ninput_usd_per_mtok = 2.5\n", {}, r"models\[0\].id must be given, as a string, got None"),
        (
            "[[models]]\nid = 'x'\ninput_usd_per_mtok = 1\noutput_usd_per_mtok = 1\nenergy_j_per_input_token = 0.1\n",
            {},
            r"models\[x\].energy_j_per_output_token and energy_j_per_input_token must be given together",
        ),
        ("[catalog]\nbase = 'none'\n", {}, r"catalog.base must be auto, shipped or empty, got 'none'"),
        ("[catalog]\nbase = 'empty'\n", {}, r"models must list at least one model, got 0"),
        ("[server]\nlisten_addr = ':1'\n", {}, r"server has unknown keys \(known: .*listen.*\), got \['listen_addr'\]"),
        ("[server\nlisten = 1\n", {}, r"config file '.*router.toml' is not valid TOML: .*line 1"),
        ("server = 3\n", {}, r"server must be a table, got 3"),
    ],
)
def test_bad_configuration_is_named(tmp_path: Path, toml: str, env: dict[str, str], match: str) -> None:
    path = tmp_path / "router.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=match):
        load_config(path, env=env)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file '.*nope.toml' cannot be read: No such file or directory"):
        load_config(tmp_path / "nope.toml", env={})


def test_models_extend_and_override_the_shipped_catalog_key_by_key(tmp_path: Path) -> None:
    shipped = {m.id: m for m in load_config(env={}).models}
    path = tmp_path / "router.toml"
    path.write_text(
        """
[[models]]
id = "gemma-2-9b-it"
output_usd_per_mtok = 0.35

[[models]]
id = "gpt-4o"
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0
"""
    )
    config = load_config(path, env={})
    models = config.model_by_id
    assert list(models) == [*shipped, "gpt-4o"]
    gemma = shipped["gemma-2-9b-it"]
    assert models["gemma-2-9b-it"].output_usd_per_mtok == 0.35
    assert models["gemma-2-9b-it"].input_usd_per_mtok == gemma.input_usd_per_mtok
    assert models["gemma-2-9b-it"].energy_j_per_output_token == gemma.energy_j_per_output_token
    api = models["gpt-4o"]
    # An API model: no size and no energy profile, so its energy is unknown rather than invented.
    assert api.parameters_b is None and api.energy_j_per_output_token is None and not api.energy_known
    assert all(models[m] == shipped[m] for m in shipped if m != "gemma-2-9b-it")


def test_an_empty_base_keeps_only_the_configured_models(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text("[catalog]\nbase = 'empty'\n" + MODEL.format(id="only") + "energy_j_per_output_token=0.1\n")
    assert [m.id for m in load_config(path, env={}).models] == ["only"]
    assert [m.id for m in load_config(path, env={"BANDIT_ROUTER_CATALOG_BASE": "shipped"}).models][-1] == "only"


def test_models_with_backends_are_the_whole_catalog_unless_it_asks_to_extend_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    backed = "base_url = 'http://127.0.0.1:9/v1'\n"
    # A shipped id with a backend keeps the shipped figures it does not give; a new id is added as it is.
    path.write_text(
        "[[models]]\nid = 'gemma-2-9b-it'\n"
        + backed
        + MODEL.format(id="mine")
        + "energy_j_per_output_token=0.1\n"
        + backed
    )
    shipped = {m.id: m for m in load_config(env={}).models}
    own = load_config(path, env={})
    assert [m.id for m in own.models] == ["gemma-2-9b-it", "mine"]
    assert own.model_by_id["gemma-2-9b-it"].output_usd_per_mtok == shipped["gemma-2-9b-it"].output_usd_per_mtok
    extended = load_config(path, env={"BANDIT_ROUTER_CATALOG_BASE": "shipped"})
    assert [m.id for m in extended.models] == [*shipped, "mine"]
    # Without a backend, entries extend the shipped catalog as before.
    path.write_text(MODEL.format(id="mine") + "energy_j_per_output_token=0.1\n")
    assert [m.id for m in load_config(path, env={}).models] == [*shipped, "mine"]
