"""The config schema (so a typo in a key or a wrong type fails at compose time) and the resolvers
the config uses: a job's run-dir name from its overrides, joblib's default number of jobs."""

import hashlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from sweep.resources import default_n_jobs


@dataclass
class ModelConfig:
    name: str = MISSING
    id: str = MISSING
    offline_package: Optional[str] = None
    offline_id: Optional[str] = None
    family: Optional[str] = MISSING  # null where only tiny=true would need it (model=hf)
    tiny: bool = False
    tiny_config: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PoolingConfig:
    name: str = MISSING


@dataclass
class DataConfig:
    name: str = MISSING
    hub_id: Optional[str] = None
    hub_config: Optional[str] = None
    local_dir: Optional[str] = None
    files: Any = None  # {split: path}; Any: Hydra can neither merge a dict override into a null Dict nor add keys to {}
    text_column: Optional[str] = None
    text_pair_column: Optional[str] = None
    label_column: str = "label"
    use_given_splits: bool = False
    n_samples: Optional[int] = None
    n_classes: int = 2
    dedup: bool = True
    split: List[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_seed: int = MISSING
    max_len: int = 128
    padding: str = "max_length"
    group_by_length: bool = False
    eval_batch_size: int = 64
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = 5e-5
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    scheduler: str = "constant"
    warmup_ratio: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 8
    early_stopping_patience: Optional[int] = None
    head_dropout: float = 0.1
    log_every_n_steps: int = 50
    device: str = "auto"
    precision: str = "auto"
    compile: Any = "auto"  # auto | true | false | reduce-overhead (a YAML bool or a string)
    compile_backend: str = "inductor"
    num_workers: int = 0
    threads: Optional[int] = None
    gpu_wait_min: float = 30.0
    save_best: bool = True
    resume: bool = True


@dataclass
class LoggerConfig:
    name: str = MISSING
    project: Optional[str] = None
    entity: Optional[str] = None
    mode: str = "offline"


@dataclass
class Config:
    seed: int = 42
    model: ModelConfig = MISSING
    pooling: PoolingConfig = MISSING
    data: DataConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING


MAX_DIRNAME_BYTES = 200  # file systems take 255 bytes per path component; room left for the hash


def run_dirname(override_dirname: str) -> str:
    """A job's overrides as one path component: readable, stable, unique per combination. A name
    too long for a file system (a model.id that is a deep local path) is cut and ends in a hash of
    the whole, so it stays unique."""
    name = override_dirname.replace("/", "_").replace("\\", "_") or "default"
    encoded = name.encode()
    if len(encoded) <= MAX_DIRNAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return encoded[: MAX_DIRNAME_BYTES - len(digest) - 1].decode(errors="ignore") + "-" + digest


def register() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)
    OmegaConf.register_new_resolver("run_dirname", run_dirname, replace=True)
    OmegaConf.register_new_resolver("default_n_jobs", default_n_jobs, replace=True)


register()
