"""The config schema: every knob of every group, its type, its base value, the values it accepts
(its rule, sweep/config/rules.py: checked when a job starts, before anything loads) and its one comment
(meaning and unit). Each YAML in conf/ starts from its group's base here (`defaults: [base_data,
_self_]`) and states only what differs; sweep/launch/config_store.py registers these classes with Hydra.

Plain dataclasses, importable without Hydra or OmegaConf (the GPU machines that run the benchmark
have neither), so the benchmark and the tests build their configs from here, not from copies."""

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Optional

from sweep.config.metrics import SELECT_METRICS, TASKS
from sweep.config.rules import Device, Each, Fields, Fractions, Integer, Number, OneOf, Text, knob

MISSING = "???"  # OmegaConf's marker of a value the user must set (omegaconf.MISSING is this string)
SEED = "${seed}"  # follows the top-level seed unless set


@dataclass
class TinyBertArchitecture:
    """The random-init tiny encoder of the smoke tests and CI (HF BertConfig fields)."""

    hidden_size: int = 64  # width of the token states
    num_hidden_layers: int = 2  # transformer blocks
    num_attention_heads: int = 2  # heads per block
    intermediate_size: int = 128  # feed-forward width
    max_position_embeddings: int = 512  # longest input in tokens
    vocab_size: int = 2000  # size of the vocabulary trained on the train texts (WordPiece / byte-level BPE)


@dataclass
class TinyModernBertArchitecture(TinyBertArchitecture):
    """The tiny ModernBERT (HF ModernBertConfig fields): BERT's sizes plus its attention layout."""

    global_attn_every_n_layers: int = 2  # one global-attention block every n, local (sliding window) in between
    local_attention: int = 64  # sliding-window width in tokens


def _tiny(architecture) -> Any:
    # a plain mapping, not a nested schema: any other HF config field of the family can be added to it
    sizes = tuple(f.name for f in fields(TinyModernBertArchitecture))
    return knob(rule=Fields(Integer(low=1), sizes), factory=lambda: asdict(architecture()))


SEED_RANGE = Integer(0, 2**32 - 1)  # what numpy's seeding (under transformers.set_seed) takes
FAMILIES = ("bert", "modernbert")  # the architecture families with a tiny build (sweep/model/tiny.py)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # sweep.model.device.resolve_precision
TRUNCATIONS = ("head", "tail", "head_tail", "chunks")  # sweep/data/truncation.py, chunks: sweep/data/windows.py
WINDOW_POOLINGS = ("mean", "max", "attention")  # a text's window vectors -> its vector (sweep/model/pooling.py)
METHODS = ("finetune", "frozen", "lora")  # sweep/model/regimes.py
TRACKERS = ("wandb", "mlflow", "tensorboard")  # sweep/job/tracking.py


def scheduler_names() -> List[str]:
    from transformers import SchedulerType

    return [kind.value for kind in SchedulerType]


POOLINGS = ("cls", "mean", "max", "cls_mean", "attention")  # each implemented in sweep/model/pooling.py


def pooling_names() -> List[str]:
    return list(POOLINGS)


@dataclass
class ModelConfig:
    name: str = knob(MISSING, Text())  # short name used in run dirs, tables and wandb tags (it names the cells)
    # Hugging Face hub id, or a local directory holding a saved checkpoint (save_pretrained)
    id: str = knob(MISSING, Text())
    # a Python package bundling this model, used instead of the hub if installed
    offline_package: Optional[str] = knob(None, Text(optional=True))
    # the hub id that package bundles: only that model.id is replaced by the copy
    offline_id: Optional[str] = knob(None, Text(optional=True))
    # architecture family: decides the tiny model and tokenizer (tiny=true); a real checkpoint's
    # architecture comes from its config.json, so model=hf leaves it null
    family: Optional[str] = knob(None, OneOf(FAMILIES, optional=True))
    tiny: bool = False  # true: random-init tiny model of `family` + tokenizer trained offline on the train texts
    tiny_config: Dict[str, Any] = _tiny(TinyBertArchitecture)  # the tiny architecture, used only when tiny=true


@dataclass
class BertModelConfig(ModelConfig):
    family: Optional[str] = knob("bert", OneOf(FAMILIES, optional=True))


@dataclass
class ModernBertModelConfig(ModelConfig):
    family: Optional[str] = knob("modernbert", OneOf(FAMILIES, optional=True))
    tiny_config: Dict[str, Any] = _tiny(TinyModernBertArchitecture)


FAMILY_MODELS = {"bert": BertModelConfig, "modernbert": ModernBertModelConfig}  # the families with a tiny build


@dataclass
class PoolingConfig:
    # token states -> one sentence vector (padding masked out): cls | mean | max | cls_mean ([CLS] and
    # the mean side by side) | attention (a learned query weighs the tokens, trained with the head)
    name: str = knob(MISSING, OneOf(pooling_names))
    # the token states pooled: the average of the last `layers` layers' outputs (1: the last layer's)
    layers: int = knob(1, Integer(low=1))
    # data.truncation=chunks: a text's window vectors (each pooled as `name` says) -> the text's vector:
    # mean | max (element-wise) | attention (a learned query weighs the windows, trained with the head)
    windows: str = knob("mean", OneOf(WINDOW_POOLINGS))


@dataclass
class MethodConfig:
    """The training regime. Each preset in conf/method/ also sets the learning rate it needs."""

    # finetune: every weight trains (the seed recipe) | frozen: the encoder never changes, only the
    # pooling and head train (a probe; parameter-free poolings train on cached features) | lora:
    # low-rank adapters on the encoder's attention (peft), the pooling and head in full
    name: str = knob(MISSING, OneOf(METHODS))
    r: int = knob(8, Integer(low=1))  # lora: rank of each adapter's update
    alpha: float = knob(16.0, Number(0, low_open=True))  # lora: the update is scaled by alpha / r
    dropout: float = knob(0.1, Number(0, 1, high_open=True))  # lora: dropout on the adapters' input
    # lora: the encoder's modules that get adapters, e.g. [query,value]; null: the family's default
    # (BERT and MiniLM: query, value; ModernBERT: Wqkv; other families: peft's default where it has one)
    target_modules: Optional[List[str]] = knob(None, Each(Text(), optional=True))
    # frozen: dir of the cached pooled features (shared by the runs of a sweep, safe across jobs);
    # null: $ENCODER_SWEEP_CACHE or ~/.cache/encoder_sweep, then features/
    feature_cache: Optional[str] = knob(None, Text(optional=True))


@dataclass
class DataConfig:
    # dataset name in tables and run configs; imdb and synthetic pick their loader, any other name
    # (e.g. data.name=tickets) reads text_column from local_dir, files or hub_id
    name: str = knob(MISSING, Text())
    # Hugging Face dataset id, used when neither local_dir nor files is set
    hub_id: Optional[str] = knob(None, Text(optional=True))
    # the hub dataset's config name (e.g. sst2 of nyu-mll/glue); null = its default
    hub_config: Optional[str] = knob(None, Text(optional=True))
    # a dir read instead of the hub: imdb: train.parquet and test.parquet (columns text, label);
    # text: train / validation (or valid, dev) / test files, .csv, .jsonl, .json or .parquet
    local_dir: Optional[str] = knob(None, Text(optional=True))
    # explicit files per split instead, e.g. {train: a.csv, test: b.jsonl}; typed Any because Hydra
    # can neither merge a dict override into a null Dict nor add keys to {}
    files: Any = None
    # the column holding the text; null: imdb / synthetic, which know their own
    text_column: Optional[str] = knob(None, Text(optional=True))
    # a second text column for sentence pairs (a tokenizer pair); null = none
    text_pair_column: Optional[str] = knob(None, Text(optional=True))
    # the label column: single_label: integers or strings, mapped to ids 0..k-1 in sorted order;
    # multi_label: a list of them per row (JSONL, parquet) or a string of them split by label_separator
    # (CSV); regression: numbers
    label_column: str = knob("label", Text())
    # single_label: one class per text | multi_label: a set of labels per text (one sigmoid each) |
    # regression: a number per text (one output, MSE on the standardized target)
    task: str = knob("single_label", OneOf(TASKS))
    label_separator: str = knob(",", Text())  # multi_label: what separates the labels of a CSV cell
    # true: keep the data's own train/validation/test (a missing valid or test is carved from train);
    # false: merge all and split by `split`
    use_given_splits: bool = False
    # synthetic data only: number of generated reviews (before the split)
    n_samples: Optional[int] = knob(None, Integer(low=1, optional=True))
    # synthetic data only: 2: sentiment reviews; 3-8: reviews of that many topics (film, food, ...)
    n_classes: int = knob(2, Integer(2, 8))
    # synthetic data only: words of neutral filler before each review, which puts its signal past
    # the first max_len tokens (a long-document check: head truncation sees no signal)
    preamble_words: int = knob(0, Integer(low=0))
    dedup: bool = True  # drop exact-duplicate texts (first kept) before splitting; given splits are kept as given
    # train / valid / test fractions (stratified)
    split: List[float] = knob(rule=Fractions(3), factory=lambda: [0.8, 0.1, 0.1])
    # seed of the shuffled split (and of a valid/test carved from a given train); fix it (e.g. 42) to
    # keep one test set while sweeping seed. Generated texts come from a fixed generator seed.
    split_seed: int = knob(SEED, SEED_RANGE)
    # tokens per example after truncation (special tokens included; a pair counts both texts)
    max_len: int = knob(128, Integer(low=8))
    # which tokens of a longer text are kept: head (the first) | tail (the last) | head_tail (a quarter of
    # the budget from the head, the rest from the end: Sun et al. 2019) | chunks (the whole text in
    # windows of max_len tokens, each encoded and pooled, the windows pooled by pooling.windows);
    # single texts only (pairs: head)
    truncation: str = knob("head", OneOf(TRUNCATIONS))
    # chunks: windows per text at most, the first ones (a longer text's rest is cut); memory holds
    # batch_size x max_chunks windows of max_len tokens
    max_chunks: int = knob(8, Integer(low=1))
    # chunks: tokens each window repeats from the one before (overlap), below half of max_len
    chunk_stride: int = knob(0, Integer(low=0))
    # max_length: pad every batch to max_len (the seed's) | dynamic: to the batch's longest
    padding: str = knob("max_length", OneOf(("max_length", "dynamic")))
    group_by_length: bool = False  # dynamic padding: batch examples of similar length together (less padding)
    eval_batch_size: int = knob(64, Integer(low=1))  # batch size for validation and test (inference only, so larger)
    # cap on training examples (quick runs); null = all
    max_train_samples: Optional[int] = knob(None, Integer(low=1, optional=True))
    # cap on validation and test examples each; null = all
    max_eval_samples: Optional[int] = knob(None, Integer(low=1, optional=True))


@dataclass
class OptimConfig:
    """The base values are the seed recipe: Adam, constant learning rate."""

    name: str = knob(MISSING, Text())  # recipe name in tables; one starting with adamw selects AdamW, any other Adam
    lr: float = knob(5e-5, Number(0, low_open=True))  # peak learning rate
    # L2 penalty (Adam) / decoupled decay (AdamW); biases and norms never decay
    weight_decay: float = knob(0.0, Number(0))
    # Adam moment decay rates
    betas: List[float] = knob(rule=Each(Number(0, 1, high_open=True), 2), factory=lambda: [0.9, 0.999])
    eps: float = knob(1e-8, Number(0, low_open=True))  # Adam denominator epsilon
    # transformers.get_scheduler name: constant | linear | cosine | ...
    scheduler: str = knob("constant", OneOf(scheduler_names))
    warmup_ratio: float = knob(0.0, Number(0, 1))  # fraction of all training steps spent warming up linearly from 0
    # layer-wise learning-rate decay: each encoder layer trains at the next-higher layer's rate times
    # this, the embeddings lowest, pooling and head at optim.lr (Sun et al. 2019: 0.95); 1.0: off
    layer_decay: float = knob(1.0, Number(0, 1, low_open=True))
    # none: every class weighs the same (the seed's) | balanced: the cross-entropy weighs class c by
    # n_rows / (n_classes x rows of c), counted on the train split (an imbalanced set's minority counts)
    class_weights: str = knob("none", OneOf(("none", "balanced")))


@dataclass
class TrainerConfig:
    epochs: int = knob(
        5, Integer(low=1)
    )  # maximum epochs; validation after each, the best one by select_metric is kept
    batch_size: int = knob(8, Integer(low=1))  # training batch size (the seed's: 40,000 / 8 = 5,000 steps an epoch)
    # micro-batches of batch_size per optimizer step: the update of one batch of grad_accum_steps x
    # batch_size in the memory of one batch_size (steps, warmup and logging count optimizer steps)
    grad_accum_steps: int = knob(1, Integer(low=1))
    # clip the gradients' global L2 norm to this before each optimizer step (the norm before clipping
    # is logged as train/grad_norm); null: no clipping (the seed's)
    max_grad_norm: Optional[float] = knob(None, Number(0, low_open=True, optional=True))
    # validate every n optimizer steps (and after the last), each a row of history.csv; null: after every epoch
    eval_every_steps: Optional[int] = knob(None, Integer(low=1, optional=True))
    # end training after this many optimizer steps, however many epochs that is; null: trainer.epochs decides
    max_steps: Optional[int] = knob(None, Integer(low=1, optional=True))
    # the validation metric that chooses the best checkpoint and drives early stopping and tuning, one
    # of data.task's: single_label: valid/acc | valid/macro_f1 (an imbalanced set) | valid/loss;
    # multi_label: valid/micro_f1 | valid/macro_f1 | valid/subset_acc | valid/loss; regression:
    # valid/pearson | valid/spearman | valid/mse | valid/loss (loss and mse: lower is better);
    # null: the task's headline (valid/acc, valid/micro_f1, valid/pearson)
    select_metric: Optional[str] = knob(None, OneOf(SELECT_METRICS, optional=True))
    # multi_label: a label is predicted where its probability is at least this
    threshold: float = knob(0.5, Number(0, 1, low_open=True, high_open=True))
    # stop after this many validations without a better select_metric; null: off
    early_stopping_patience: Optional[int] = knob(None, Integer(low=1, optional=True))
    head_dropout: float = knob(0.1, Number(0, 1, high_open=True))  # dropout before the linear head
    # train/loss to the logger every n optimizer steps (the only host sync in the loop)
    log_every_n_steps: int = knob(50, Integer(low=1))
    device: str = knob("auto", Device())  # auto (cuda if available, else cpu) | cpu | cuda | cuda:N
    # auto (bf16 on a GPU that supports it, else fp32) | bf16 | fp16 (grad scaler) | fp32 (TF32 matmuls on GPU)
    precision: str = knob("auto", OneOf(PRECISIONS))
    # auto (true on GPU, false on CPU; falls back to eager if compiling fails) | true (fails before
    # training if compiling fails) | false | reduce-overhead (+ CUDA graphs; needs data.padding=max_length).
    # Typed Any: a YAML bool or a string.
    compile: Any = knob("auto", OneOf(("auto", True, False, "reduce-overhead")))
    # recompute the encoder's activations in the backward pass instead of keeping them (its own
    # gradient_checkpointing_enable, non-reentrant): BERT-base at 4 x 512 on a CPU kept 91 MiB of
    # activations instead of 3,043 for 1.09x the step time (bench.py --long)
    gradient_checkpointing: bool = False
    # torch.compile backend; eager / aot_eager tell a compiler bug from a model bug
    compile_backend: str = knob("inductor", Text())
    num_workers: int = knob(0, Integer(low=0))  # DataLoader worker processes
    # torch CPU threads; null = all cores, or cores / n_jobs under the joblib launcher
    threads: Optional[int] = knob(None, Integer(low=1, optional=True))
    # minutes a job waits for a GPU that other jobs hold (joblib on several GPUs) before it fails;
    # 30 outlasts a full-size run (~15 min on an H100) that frees one
    gpu_wait_min: float = knob(30.0, Number(0))
    save_best: bool = True  # write the best/ checkpoint (false: metrics and predictions only)
    resume: bool = True  # rerunning into the same dir: skip completed runs, resume interrupted ones


@dataclass
class LoggerConfig:
    # the experiment trackers a run logs to, any of wandb, mlflow, tensorboard, several at once
    # (logger.trackers=[wandb,mlflow]); [] logs nothing beyond the run dir's own files
    trackers: List[str] = knob(rule=Each(OneOf(TRACKERS), may_be_empty=True), factory=lambda: ["wandb"])
    project: Optional[str] = knob(None, Text(optional=True))  # wandb project
    entity: Optional[str] = knob(None, Text(optional=True))  # wandb team/user; null = your default
    # offline (local, `wandb sync` later) | online (after `wandb login`) | disabled; the WANDB_MODE env var wins
    mode: str = knob("offline", OneOf(("offline", "online", "disabled")))
    # MLflow's tracking URI (http://host:5000, sqlite:///path.db, a dir); null: MLFLOW_TRACKING_URI, else
    # the project's SQLite store, outputs/mlflow.db beside the sweeps (its artifacts in outputs/mlartifacts)
    tracking_uri: Optional[str] = knob(None, Text(optional=True))
    experiment: Optional[str] = knob(None, Text(optional=True))  # MLflow experiment; null: the data set's name
    log_model: bool = False  # MLflow: also log best/ as a model (pyfunc) and register it
    registered_model: Optional[str] = knob(None, Text(optional=True))  # its registry name; null: the experiment's


@dataclass
class Config:
    # transformers.set_seed: model init, dropout, batch order (and the split, via data.split_seed)
    seed: int = knob(42, SEED_RANGE)
    model: ModelConfig = MISSING
    pooling: PoolingConfig = MISSING
    method: MethodConfig = MISSING
    data: DataConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING


# each group's bases, as the group's YAMLs name them in their defaults lists
GROUP_BASES = {
    "model": {"base_model": ModelConfig, "base_bert": BertModelConfig, "base_modernbert": ModernBertModelConfig},
    "pooling": {"base_pooling": PoolingConfig},
    "method": {"base_method": MethodConfig},
    "data": {"base_data": DataConfig},
    "optim": {"base_optim": OptimConfig},
    "trainer": {"base_trainer": TrainerConfig},
    "logger": {"base_logger": LoggerConfig},
}
