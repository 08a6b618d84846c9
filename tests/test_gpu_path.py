"""The GPU code path, checked on CPU: compilation (a clean compiler per job, every shape warmed up
before the timed epochs, a failing compiler), precision on old and new cards, exact fp16 resume,
the job's own CUDA random stream, half-precision checkpoints and an explicit model.id. Only what
a CPU cannot have is faked: the GPU's compute capability and RNG, and a compiler that fails."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.app import TIMING_KEYS, kill_after_epoch, train_in_process
from helpers.rundirs import compose_config, metrics, run_dirs
from sweep.errors import CompileError
from sweep.fit import compilation, resume
from sweep.job.runner import run
from sweep.model import device
from sweep.model.tiny import tiny_config, train_tokenizer

# small and quick: ~960 train rows in batches of 28 (a partial last batch), ~120 valid and test rows
# in eval batches of 16 (partial last batches): several input shapes to warm up
QUICK = ["experiment=smoke", "logger=none", "data.n_samples=1200", "trainer.batch_size=28", "data.eval_batch_size=16"]


@pytest.mark.slow
def test_jobs_of_one_process_stay_compiled_with_no_recompile_after_the_warm_up(tmp_path):
    """The basic launcher runs every job in one process: each must start from a clean compiler,
    compile every shape before its first timed epoch, and say truthfully that it ran compiled.
    (dynamo's eager backend: the same graph capture and guards as inductor, without code generation.)"""
    sweep_dir = tmp_path / "sweep"
    train_in_process(
        *[o for o in QUICK if not o.startswith("data.n_samples")],
        "data.n_samples=600",  # capturing the graphs is the cost (5-9 s a job); valid/acc 0.83-0.90 on 600
        "model=bert,modernbert",
        "pooling=cls,mean",
        "trainer.epochs=2",
        "trainer.compile=true",
        "trainer.compile_backend=eager",
        f"hydra.sweep.dir={sweep_dir}",
    )
    dirs = run_dirs(sweep_dir)
    assert len(dirs) == 4
    for run_dir in dirs:
        m = metrics(run_dir)
        assert m["status"] == "completed" and m["valid/acc"] > 0.6, run_dir.name
        assert m["compiled"] is True and m["recompiles"] == 0 and m["compile_seconds"] > 0, (run_dir.name, m)
        assert m["graph_breaks"] == 0, (run_dir.name, m)  # one graph per mode: what CUDA graphs need


def test_dynamic_padding_compiles_once_for_every_length(tmp_path):
    run_dir = tmp_path / "run"
    run(
        compose_config(
            *QUICK,
            "model=modernbert",
            "trainer.epochs=1",
            "data.padding=dynamic",
            "data.group_by_length=true",
            "trainer.compile=true",
            "trainer.compile_backend=eager",
        ),
        run_dir,
    )
    m = metrics(run_dir)
    assert m["status"] == "completed" and m["compiled"] is True and m["recompiles"] == 0, m


def _fails_like_a_missing_compiler(graph_module, example_inputs):
    raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")


@pytest.fixture
def failing_compiler(monkeypatch):
    """A compiler backend that fails as inductor does on a GPU too old for Triton or a node
    without a C compiler; and compile=auto compiling on this CPU, as it does on a GPU."""
    from torch._dynamo.backends.registry import _COMPILER_FNS, register_backend

    if "fails_like_a_missing_compiler" not in _COMPILER_FNS:
        register_backend(_fails_like_a_missing_compiler, name="fails_like_a_missing_compiler")
    monkeypatch.setattr(compilation, "compiles_by_default", lambda device: True)
    return "trainer.compile_backend=fails_like_a_missing_compiler"


def test_compile_true_that_fails_stops_before_training_in_one_line(tmp_path, failing_compiler):
    run_dir = tmp_path / "run"
    with pytest.raises(CompileError) as caught:
        run(compose_config(*QUICK, "model=bert", "trainer.compile=true", failing_compiler), run_dir)
    message = str(caught.value)
    assert "\n" not in message and "C compiler" in message and "trainer.compile=false" in message
    m = metrics(run_dir)
    assert m["status"] == "failed" and m["error"].endswith(message)
    assert not (run_dir / "history.csv").exists()


def test_compile_auto_that_fails_warns_once_and_trains_eagerly(tmp_path, failing_compiler, caplog):
    run_dir = tmp_path / "run"
    run(compose_config(*QUICK, "model=bert", "trainer.epochs=2", "trainer.compile=auto", failing_compiler), run_dir)
    m = metrics(run_dir)
    assert m["status"] == "completed" and m["valid/acc"] > 0.6
    assert m["compiled"] is False and "C compiler" in m["compile_error"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "torch.compile failed" in r.message]
    assert len(warnings) == 1 and "eagerly" in warnings[0].message


def test_reduce_overhead_with_dynamic_padding_is_refused_in_one_line(tmp_path):
    from test_bad_input import failed_run

    message = failed_run(tmp_path, "trainer.compile=reduce-overhead", "data.padding=dynamic")
    assert "data.padding=max_length" in message and "trainer.compile=true" in message


@pytest.mark.parametrize(
    "capability, expected", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")]
)
def test_auto_precision_asks_the_jobs_own_gpu_for_native_bf16(monkeypatch, capability, expected):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # says yes on a V100 too
    precision = device.resolve_precision("auto", torch.device("cuda:1"))
    assert precision.name == expected and asked == [torch.device("cuda:1")]
    assert (precision.scaler is not None) == (expected == "fp16")  # fp16 always with a grad scaler


@pytest.mark.slow
def test_fp16_resume_restores_the_loss_scale_and_ends_as_if_never_stopped(tmp_path):
    overrides = [
        *[o for o in QUICK if not o.startswith("data.n_samples")],
        "data.n_samples=400",  # 12 steps an epoch: the scale moves in the first (41 s on 1,200 rows, 18 s here)
        "model=bert",
        "pooling=mean",
        "trainer.precision=fp16",
        "trainer.epochs=2",
        "optim.lr=1e-2",
    ]  # a large step: fp16 gradients overflow, the scale moves
    run_dir, reference = kill_after_epoch(tmp_path, overrides, epoch=1)
    scale = torch.load(run_dir / "resume_state.pt", weights_only=True)["training"]["scaler"]["scale"]
    assert scale != 65536.0  # the scale moved during epoch 1: restarting at 65536 would change the run
    train_in_process(*overrides, f"hydra.sweep.dir={run_dir.parent}")
    assert "resuming after epoch 1" in (run_dir / "train.log").read_text()
    resumed, uninterrupted = metrics(run_dir), metrics(reference)
    for key in uninterrupted.keys() - TIMING_KEYS - {"compile_seconds"}:
        assert resumed[key] == uninterrupted[key], key


def test_resume_state_holds_the_random_stream_of_the_jobs_gpu_only(monkeypatch):
    """A rerun may see fewer GPUs, or the job's GPU under another index: the state holds and
    restores only the stream of the device the job ran on."""
    streams = {0: torch.tensor([0], dtype=torch.uint8), 1: torch.tensor([1], dtype=torch.uint8)}
    asked, restored = [], []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every device's stream was saved"))
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: asked.append(device) or streams[device.index])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((int(state[0]), device)))
    state = resume.rng_state(torch.device("cuda:1"))
    assert asked == [torch.device("cuda:1")]
    resume.set_rng_state(state, torch.device("cuda:0"))  # the rerun sees that GPU as cuda:0
    assert restored == [(1, torch.device("cuda:0"))]
    resume.set_rng_state(resume.rng_state(torch.device("cpu")), torch.device("cpu"))
    assert len(restored) == 1  # a CPU run touches no GPU stream


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory):
    """A tiny BERT saved in bf16 with its tokenizer, as a half-precision hub checkpoint would be."""
    from transformers import AutoModel

    from sweep.data.sources import generate_synthetic

    directory = tmp_path_factory.mktemp("bf16-bert")
    tokenizer = train_tokenizer(generate_synthetic(400)["text"], "bert", 2000)
    config = tiny_config(
        "bert",
        tokenizer,
        {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": 512,
        },
    )
    AutoModel.from_config(config).to(torch.bfloat16).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_bf16_checkpoint_named_by_model_id_trains_with_fp32_weights(tmp_path, bf16_checkpoint):
    """model.id wins over the MiniLM bundled for model=minilm, and a half-precision checkpoint is
    trained with fp32 master weights (Adam's small updates would round away in bf16)."""
    sweep_dir = tmp_path / "sweep"
    train_in_process(
        "experiment=smoke",
        "model=bert,minilm",
        "model.tiny=false",
        f"model.id={bf16_checkpoint}",
        "logger=none",
        "trainer.epochs=1",  # valid/acc 0.803 for both (threshold 0.7)
        f"hydra.sweep.dir={sweep_dir}",
    )
    tiny_params = json.loads((bf16_checkpoint / "config.json").read_text())["hidden_size"]
    for run_dir in run_dirs(sweep_dir):
        m = metrics(run_dir)
        assert m["status"] == "completed" and m["valid/acc"] > 0.7, (run_dir.name, m)
        assert m["params"] < 1_000_000, (run_dir.name, m["params"])  # the tiny checkpoint, not MiniLM's 22.7M
        weights = load_file(run_dir / "best" / "model.safetensors")
        assert {t.dtype for t in weights.values()} == {torch.float32}, run_dir.name
        assert weights["embeddings.word_embeddings.weight"].shape[1] == tiny_params
