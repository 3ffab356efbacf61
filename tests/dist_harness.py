"""Run `run_training` in a child process (plain python, or under `deepspeed --num_gpus N`) with
fault-injection and probe callbacks, for the training tests.

    python tests/dist_harness.py [--kill-at K] [--term-at K] [--logits-out F] -- key=value ...

--kill-at K     rank 0 sends itself SIGKILL at the end of step K (a real kill -9, no cleanup)
--term-at K     rank 0 sends itself SIGTERM at the end of step K (preemption path)
--shapes-out F  at train start, every rank writes layer 0's local weight shapes to F.rank<r>
--logits-out F  at train end, the engine's logits on a fixed probe batch are saved to F (rank 0)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).resolve()
PY = sys.executable
sys.path.insert(0, str(ROOT))

from jz3.train.callbacks import Callback, TrainState  # noqa: E402

PROBE_LEN = 32


def probe_batch() -> Dict[str, torch.Tensor]:
    """Two packed documents in one row (positions restart), fixed token ids."""
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(4, 2000, (1, PROBE_LEN), generator=g)
    pos = torch.cat([torch.arange(20), torch.arange(PROBE_LEN - 20)])[None]
    return {"input_ids": ids, "position_ids": pos}


class SignalAt(Callback):
    def __init__(self, step: int, sig: int) -> None:
        self.step, self.sig = step, sig

    def on_step_end(self, state: TrainState, metrics: Dict[str, float]) -> None:
        if state.step == self.step and state.dist.is_main:
            os.kill(os.getpid(), self.sig)


class DumpShapes(Callback):
    """Each rank writes the local shapes of layer 0's weights and their module types at train start."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, state: TrainState) -> None:
        layer = state.model.model.layers[0]
        local = {n: list(p.shape) for n, p in layer.named_parameters()}
        # ZeRO-3: full shape and the size of this rank's partition.
        zero3 = {n: [list(p.ds_shape), int(p.ds_tensor.numel())] for n, p in layer.named_parameters()
                 if hasattr(p, "ds_tensor")}
        types = {n: type(m).__name__ for n, m in layer.named_modules() if n}
        Path(f"{self.path}.rank{state.dist.rank}").write_text(
            json.dumps({"local": local, "zero3": zero3, "types": types}))


class DumpLogits(Callback):
    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_end(self, state: TrainState) -> None:
        from jz3.models.attention import document_forward_kwargs

        b = probe_batch()
        eng = state.engine
        eng.module.eval()
        with torch.no_grad():
            out = eng.forward(input_ids=b["input_ids"].to(eng.device),
                              **document_forward_kwargs(b["position_ids"].to(eng.device), "sdpa"))
        if state.dist.is_main:
            torch.save(out.logits.float().cpu(), self.path)

# ---------------------------------------------------------------- parent-side helpers (tests)


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def run_harness(overrides: List[str], flags: Optional[List[str]] = None, ranks: int = 0,
                timeout: int = 600) -> subprocess.CompletedProcess:
    """ranks=0: plain `python`; ranks>=1: under `deepspeed --num_gpus ranks`."""
    args = list(flags or []) + ["--"] + overrides
    if ranks:
        return launch_ranks(HARNESS, args, ranks, timeout)
    return subprocess.run([PY, str(HARNESS), *args], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def launch_ranks(script: Path, args: List[str], ranks: int,
                 timeout: int = 600) -> subprocess.CompletedProcess:
    """`deepspeed --num_gpus ranks script args` on a free port; afterwards, however the ranks
    ended, none of their DeepSpeed CPU all-reduce buffers may be left in /dev/shm."""
    port = _free_port()
    ds = shutil.which("deepspeed", path=str(Path(PY).parent)) or "deepspeed"
    cmd = [ds, "--num_gpus", str(ranks), "--master_port", str(port), str(script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert not shm_left(port), shm_left(port)
    return proc


def shm_left(port: int) -> List[Path]:
    """DeepSpeed CPU all-reduce buffers of the run on `port` still in /dev/shm (RAM until reboot;
    `jz3.parallel.dist.unlink_deepspeed_shm` removes the names right after start-up)."""
    from jz3.parallel.dist import DS_SHM_PREFIX, SHM_DIR

    return sorted(SHM_DIR.glob(f"{DS_SHM_PREFIX}_*_{port}_*"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def result_of(proc: subprocess.CompletedProcess) -> Dict[str, Any]:
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            # ranks share the pipe: a line may hold two ranks' RESULTs back to back
            return json.JSONDecoder().raw_decode(line[len("RESULT "):])[0]
    raise AssertionError(f"no RESULT line (rc={proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")


def metrics_by_step(log_file: Path) -> Dict[int, Dict[str, float]]:
    """Last logged line per step (a resumed run re-logs the steps after its checkpoint)."""
    out: Dict[int, Dict[str, float]] = {}
    for line in Path(log_file).read_text().splitlines():
        row = json.loads(line)
        out[int(row["step"])] = row
    return out


def metric_lines(log_file: Path) -> List[Dict[str, float]]:
    return [json.loads(x) for x in Path(log_file).read_text().splitlines()]


def read_wandb_history(run_dir: Path) -> List[Dict[str, Any]]:
    """History rows of an offline W&B run, parsed from its `run-*.wandb` file (LevelDB-log
    framing: 32 KiB blocks, 7-byte record headers; payloads are `wandb_internal_pb2.Record`)."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = glob.glob(str(Path(run_dir) / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert files, f"no offline W&B run under {run_dir}/wandb"
    rows: List[Dict[str, Any]] = []
    for f in sorted(files):
        buf = Path(f).read_bytes()
        assert buf[:4] == b":W&B", f"{f}: not a W&B datastore file"
        block, off, part = 32768, 7, b""
        while off + 7 <= len(buf):
            left = block - off % block
            if left < 7:
                off += left
                continue
            _crc, n, typ = struct.unpack("<IHB", buf[off:off + 7])
            if n == 0 and typ == 0:
                off += left
                continue
            part += buf[off + 7:off + 7 + n]
            off += 7 + n
            if typ in (1, 4):  # FULL or LAST
                rec = pb.Record()
                rec.ParseFromString(part)
                part = b""
                if rec.WhichOneof("record_type") == "history":
                    rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                 for i in rec.history.item})
    return rows


# ---------------------------------------------------------------- child entry
def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kill-at", type=int)
    ap.add_argument("--term-at", type=int)
    ap.add_argument("--logits-out")
    ap.add_argument("--shapes-out")
    ap.add_argument("--local_rank", "--local-rank", type=int)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    from jz3.config import compose
    from jz3.train.entry import run_training

    cfg = compose(args.overrides).stages.pretrain  # a TrainJob
    cbs: List[Any] = []
    if args.kill_at:
        cbs.append(SignalAt(args.kill_at, signal.SIGKILL))
    if args.term_at:
        cbs.append(SignalAt(args.term_at, signal.SIGTERM))
    if args.shapes_out:
        cbs.append(DumpShapes(args.shapes_out))
    if args.logits_out:
        cbs.append(DumpLogits(args.logits_out))
    res = run_training(cfg, callbacks=cbs)
    sys.stdout.write("RESULT " + json.dumps(res.__dict__) + "\n")  # one write: one line
    sys.stdout.flush()


if __name__ == "__main__":
    main()
