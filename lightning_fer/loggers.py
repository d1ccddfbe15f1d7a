"""W&B: a logger that never breaks a run for lack of credentials, and a reader of offline runs."""

from __future__ import annotations

import json
import logging
import netrc
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def wandb_has_credentials() -> bool:
    """Whether W&B could authenticate: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class FERWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` that switches itself to offline mode, with a warning, when W&B
    has no credentials (or ``WANDB_MODE=offline``), so that a run without an account or a network
    still logs everything locally (``wandb sync`` uploads it later).

    Args:
        project: W&B project.
        entity: W&B entity (user or team).
        name: run name.
        offline: log offline.
        log_model: upload checkpoints as artifacts (``True``: at the end; ``"all"``: every save).
        save_dir: where the local run files go.
        tags: run tags.
    """

    def __init__(
        self,
        project: str = "lightning_fer",
        entity: str | None = None,
        name: str | None = None,
        offline: bool = False,
        log_model: bool | str = False,
        save_dir: str = "runs/wandb",
        tags: list[str] | None = None,
    ) -> None:
        if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun"):
            offline = True
        if not offline and not wandb_has_credentials():
            log.warning("W&B: no credentials (WANDB_API_KEY or ~/.netrc); logging offline to %s", save_dir)
            offline = True
        if offline and log_model:
            log.warning("W&B: checkpoints are not uploaded as artifacts in offline mode")
            log_model = False
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            project=project, entity=entity, name=name, offline=offline, log_model=log_model, save_dir=save_dir, tags=tags
        )


def _records(path: Path) -> Iterator[bytes]:
    """The raw records of a ``.wandb`` file (a LevelDB-style log of protobuf records)."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        chunk = data[pos : pos + length]
        pos += length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:
            pos += left - 7  # zero padding to the end of the block


def read_offline_run(run_dir: str | os.PathLike, timeout: float = 60.0) -> dict:
    """History rows, summary and config of a local (offline) W&B run folder.

    W&B's service writes the run file in the background, also after ``finish()`` returns; this
    waits (up to ``timeout`` seconds) until the file holds the run's exit record.

    Returns:
        ``{"history": [dict, ...], "summary": dict, "config": dict}``.
    """
    import time

    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(run_dir.glob("run-*.wandb"))
        records = []
        if files:
            for raw in _records(files[0]):
                rec = pb.Record()
                rec.ParseFromString(raw)
                records.append(rec)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        if time.monotonic() > deadline:
            if not files:
                raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")
            log.warning("%s: the run has no exit record yet; reading what is there", files[0])
            break
        time.sleep(0.5)
    history, summary, config = [], {}, {}

    def key(item) -> str:
        return item.key or "/".join(item.nested_key)

    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            summary.update({key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "config":
            config.update({key(i): json.loads(i.value_json) for i in rec.config.update})
    return {"history": history, "summary": summary, "config": config}
