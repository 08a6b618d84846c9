"""Reading what a run left: its run dirs, metrics.json, its best checkpoint re-evaluated, and the
config Hydra composes for a set of overrides."""

import json
from pathlib import Path

from helpers.app import REPO


def compose_config(*overrides: str, hydra_node: bool = False):
    """The app's config as Hydra composes it for these overrides; with hydra_node, Hydra's own
    node too, set as the current HydraConfig so that ${hydra:...} resolves as in a job."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    import sweep.launch.config_store  # noqa: F401  registers the schema and the resolvers

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=hydra_node)
    if hydra_node:
        HydraConfig.instance().set_config(cfg)
    return cfg


def run_dirs(sweep_dir: Path):
    return sorted(p.parent for p in Path(sweep_dir).glob("*/.hydra"))


def metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def evaluate_best(run_dir: Path, split: str, padding: str = "max_length", batch_size: int = 64) -> dict:
    """What a user does to reuse a run: reload its best checkpoint and evaluate it on one of its
    splits, rebuilt from the run's saved config."""
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from sweep.data.loaders import Collator, make_loader, tokenize
    from sweep.data.sources import prepare_splits
    from sweep.fit.evaluate import evaluate
    from sweep.model.classifier import Classifier, encoder_input_names

    cfg = OmegaConf.load(Path(run_dir) / ".hydra/config.yaml")
    model = Classifier.from_pretrained(Path(run_dir) / "best")
    tokenizer = AutoTokenizer.from_pretrained(Path(run_dir) / "best")
    names = encoder_input_names(model.encoder, tokenizer)
    data = tokenize(prepare_splits(cfg.data), tokenizer, cfg.data.max_len, names)[split]
    collator = Collator(names, tokenizer.pad_token_id, cfg.data.max_len, padding)
    return evaluate(model, make_loader(data, collator, batch_size), torch.device("cpu"))
