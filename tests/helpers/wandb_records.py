"""Reads the records of an offline wandb run file (`run-*.wandb`), so tests can check what a run
logged without a server. The file is a 7-byte W&B header followed by LevelDB-log blocks of 32 KiB,
each record a protobuf `Record`."""

import struct
from pathlib import Path
from typing import Dict, List

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> List[pb.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    records, pending, pos = [], b"", HEADER
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # the tail of a block too small for a chunk header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def run_files(run_dir: Path) -> Dict[str, List[Path]]:
    """The offline run files of a run dir by wandb run id, oldest first. A resumed offline run
    writes a new `offline-run-<time>-<id>` dir with the same id: one run, several files."""
    files: Dict[str, List[Path]] = {}
    for path in sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb")):  # the dir names start with the time
        files.setdefault(path.stem.rsplit("-", 1)[-1], []).append(path)
    return files


def summarize(run_dir: Path) -> Dict[str, object]:
    """The run's id, group/name/tags, its config keys, every history row (of every resumed part, in
    order), its summary keys, its exit code (of the last part), the number of parts."""
    runs = run_files(run_dir)
    assert len(runs) == 1, f"expected one wandb run in {run_dir}, found {runs}"
    ((run_id, files),) = runs.items()
    out: Dict[str, object] = {
        "id": run_id,
        "parts": len(files),
        "history": [],
        "summary": set(),
        "config": set(),
        "exit_code": None,
    }
    for record in (record for path in files for record in read_records(path)):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            assert record.run.run_id == run_id, f"{files}: run id {record.run.run_id}, file name says {run_id}"
            out.update(group=record.run.run_group, name=record.run.display_name, tags=list(record.run.tags))
            out["config"] |= {item.key for item in record.run.config.update}
        elif kind == "config":
            out["config"] |= {item.key for item in record.config.update}
        elif kind == "history":
            out["history"].append(
                {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            )
        elif kind == "summary":
            out["summary"] |= {item.key or "/".join(item.nested_key) for item in record.summary.update}
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
