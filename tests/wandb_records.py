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
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def summarize(run_dir: Path) -> Dict[str, object]:
    """The run's group/name/tags, its config keys, every history row, its summary keys, its exit code."""
    files = list(Path(run_dir).glob("wandb/*run-*/run-*.wandb"))
    assert len(files) == 1, f"expected one wandb run in {run_dir}, found {files}"
    out: Dict[str, object] = {"history": [], "summary": set(), "config": set(), "exit_code": None}
    for record in read_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(group=record.run.run_group, name=record.run.display_name, tags=list(record.run.tags))
            out["config"] |= {item.key for item in record.run.config.update}
        elif kind == "config":
            out["config"] |= {item.key for item in record.config.update}
        elif kind == "history":
            out["history"].append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
        elif kind == "summary":
            out["summary"] |= {item.key or "/".join(item.nested_key) for item in record.summary.update}
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
