"""Every config composes; the grid composes to distinct jobs and dirs; typos fail at compose time."""

import itertools
import shutil

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from helpers.app import REPO, train_in_process
from helpers.rundirs import compose_config
from sweep.job.assembly import check_config

CONF = REPO / "conf"


def options(group: str):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def job_dir(*overrides: str) -> str:
    """The run dir Hydra gives a job of a sweep with these overrides (resolved as Hydra does)."""
    return compose_config(*overrides, hydra_node=True).hydra.sweep.subdir


# options that leave keys to the user (??? in their file): what a user adds
REQUIRED = {"model=hf": ["model.id=FacebookAI/roberta-base", "model.name=hf"]}


@pytest.mark.parametrize("group", ["model", "pooling", "data", "optim", "logger", "experiment", "trainer"])
def test_every_option_composes_and_passes_the_rules(group):
    for option in options(group):
        cfg = compose_config(f"{group}={option}", *REQUIRED.get(f"{group}={option}", []))
        check_config(cfg)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert resolved["seed"] == 42
        if group in ("model", "pooling", "data", "optim"):
            assert resolved[group]["name"] == option
        if group == "logger":  # a preset of one tracker, or none
            assert resolved["logger"]["trackers"] == ([] if option == "none" else [option])


def test_defaults_are_the_seed_recipe():
    cfg = compose_config()
    assert cfg.model.id == "bert-base-uncased" and cfg.pooling.name == "cls" and cfg.data.name == "imdb"
    assert cfg.data.hub_id == "stanfordnlp/imdb" and list(cfg.data.split) == [0.8, 0.1, 0.1]
    assert cfg.data.max_len == 128 and cfg.data.split_seed == 42 and cfg.data.dedup
    assert cfg.optim.name == "adam" and cfg.optim.lr == 5e-5 and cfg.optim.scheduler == "constant"
    assert cfg.trainer.epochs == 5 and cfg.trainer.batch_size == 8 and list(cfg.logger.trackers) == ["wandb"]
    assert compose_config("model=modernbert").model.id == "answerdotai/ModernBERT-base"


def test_grid_composes_to_distinct_jobs_and_dirs():
    grid = list(itertools.product(["bert", "modernbert"], ["cls", "mean"]))
    jobs = [compose_config(f"model={m}", f"pooling={p}") for m, p in grid]
    assert {(j.model.name, j.pooling.name) for j in jobs} == set(grid)
    dirs = {job_dir(f"model={m}", f"pooling={p}") for m, p in grid}
    assert dirs == {
        "model=bert,pooling=cls",
        "model=bert,pooling=mean",
        "model=modernbert,pooling=cls",
        "model=modernbert,pooling=mean",
    }


def test_swept_learning_rates_get_distinct_dirs():
    dirs = {job_dir("model=bert", f"optim.lr={lr}") for lr in ("1e-5", "3e-5")}
    assert len(dirs) == 2


def test_path_values_stay_one_dir_level():
    assert "/" not in job_dir("data.local_dir=/data/imdb")


def test_any_key_can_be_overridden():
    cfg = compose_config("optim.lr=3e-5", "data.max_len=256", "trainer.epochs=3", "seed=7")
    assert (cfg.optim.lr, cfg.data.max_len, cfg.trainer.epochs, cfg.seed) == (3e-5, 256, 3, 7)
    assert cfg.data.split_seed == 7  # the split follows the seed unless pinned


def test_smoke_experiment_uses_tiny_models_and_generated_data():
    cfg = compose_config("experiment=smoke", "model=modernbert")
    assert cfg.model.tiny and cfg.model.family == "modernbert" and cfg.data.name == "synthetic"


@pytest.mark.parametrize("override", ["trainer.epocs=3", "optim.learning_rate=1e-4", "trainer.epochs=three"])
def test_typos_and_bad_types_fail_at_compose_time(override):
    with pytest.raises(ConfigCompositionException):
        compose_config(override)


def test_unknown_model_fails_with_the_list_of_options():
    result = train_in_process("model=bart", multirun=False, check=False)
    assert result.returncode != 0
    message = result.stderr
    assert "model/bart" in message or "model=bart" in message
    for option in ("bert", "modernbert", "minilm"):
        assert option in message


# a key of each group and a value of its type: set as given it composes, misspelt it is refused
GROUP_KEYS = {
    "model": ("id", "some/model"),
    "pooling": ("name", "mean"),
    "data": ("max_len", "32"),
    "optim": ("lr", "0.0001"),
    "trainer": ("epochs", "2"),
    "logger": ("mode", "offline"),
}


@pytest.mark.parametrize("group", sorted(GROUP_KEYS))
def test_an_unknown_key_is_refused_in_every_option_of_every_group(group):
    key, value = GROUP_KEYS[group]
    for option in options(group):
        required = REQUIRED.get(f"{group}={option}", [])
        assert str(compose_config(f"{group}={option}", *required, f"{group}.{key}={value}")[group][key]) == value
        with pytest.raises(ConfigCompositionException):
            compose_config(f"{group}={option}", *required, f"{group}.{key}x={value}")


def test_a_typo_in_the_tiny_architecture_is_refused():
    assert compose_config("model.tiny_config.hidden_size=32").model.tiny_config.hidden_size == 32
    with pytest.raises(ConfigCompositionException):
        compose_config("model.tiny_config.hiden_size=32")


def test_a_typo_in_a_group_yaml_is_refused(tmp_path):
    """A key the schema lacks, written in an option's file, fails when that option is composed."""
    from hydra import compose, initialize_config_dir

    import sweep.launch.config_store  # noqa: F401  registers the schema

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "data" / "typo.yaml").write_text("defaults:\n  - base_data\n  - _self_\n\nname: typo\nmax_lenght: 64\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        assert compose("config", overrides=["data=imdb"]).data.name == "imdb"
        with pytest.raises(ConfigCompositionException):
            compose("config", overrides=["data=typo"])


def test_each_family_states_its_tiny_architecture_once():
    """The tiny models of model.tiny=true and of the benchmark are one architecture per family."""
    from sweep.benchmarks.harness import build_config

    bert, modernbert = compose_config("model=bert").model, compose_config("model=modernbert").model
    assert compose_config("model=minilm").model.tiny_config == bert.tiny_config
    assert set(modernbert.tiny_config) - set(bert.tiny_config) == {"global_attn_every_n_layers", "local_attention"}
    for name, model in (("bert-tiny", bert), ("modernbert-tiny", modernbert)):
        config = build_config(name)
        for key, value in model.tiny_config.items():
            assert getattr(config, key) == value, (name, key)


def test_model_hf_leaves_name_and_id_to_the_user():
    cfg = compose_config("model=hf")
    assert OmegaConf.is_missing(cfg.model, "name") and OmegaConf.is_missing(cfg.model, "id")
    assert cfg.model.family is None and not cfg.model.tiny
