"""torchrun worker for ``test_distributed``: one process of ``train_classifier``.

``python -m torch.distributed.run ... ddp_worker.py CONFIG_JSON RECORD_DIR KILL_EPOCH``

Every process records the files it opens for writing or renames inside the run folder (a
Python audit hook, so the trainer is not changed) and how many epochs it trained, in
``RECORD_DIR/rank<R>.json``.  With ``KILL_EPOCH >= 0``, rank 1 kills itself (SIGKILL) at the
start of that epoch, once rank 0's checkpoint holds the epoch before.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    cfg_json, record_dir, kill_epoch = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    rank = int(os.environ["RANK"])
    out = os.path.abspath(json.loads(cfg_json)["out"])
    writes: list[str] = []

    def inside(path: object) -> str | None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None
        p = os.path.abspath(os.fsdecode(path))
        return p if p.startswith(out) else None

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in str(mode or "") for c in "wax+") or bool(
                (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing and (p := inside(path)):
                writes.append(p)
        elif event in ("os.rename", "os.replace") and (p := inside(args[1])):
            writes.append(p)

    sys.addaudithook(hook)
    import torch

    import medsight.training.classification as tc
    from medsight.training.config import ClassifyConfig

    real_shard, epochs = tc.epoch_shard, []

    def counted(order, info):  # called once per trained epoch
        epochs.append(len(epochs))
        if rank == 1 and len(epochs) - 1 == kill_epoch:
            ckpt = Path(out) / "checkpoint.pt"
            for _ in range(600):  # wait until rank 0 saved the epoch before, then die
                if (
                    ckpt.is_file()
                    and torch.load(ckpt, weights_only=False)["epoch"] >= kill_epoch - 1
                ):
                    break
                time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_shard(order, info)

    tc.epoch_shard = counted
    tc.train_classifier(ClassifyConfig.model_validate_json(cfg_json))
    record = {"rank": rank, "epochs_trained": len(epochs), "writes": writes}
    (record_dir / f"rank{rank}.json").write_text(json.dumps(record), encoding="utf-8")


if __name__ == "__main__":
    main()
