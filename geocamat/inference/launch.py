"""Where the ranks of a prediction come from, and starting local ones.

In order: an initialised ``torch.distributed`` group; the environment of a launcher (``torchrun``:
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; ``srun``: ``SLURM_PROCID``/``SLURM_STEP_NUM_TASKS``/``SLURM_LOCALID``);
else ``devices`` local processes started here (CPU processes, or one GPU per local rank), which meet on a TCP
store on 127.0.0.1. Only barriers are needed, so the process group is gloo on CPUs and GPUs alike.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from geocamat.errors import ConfigError, GeocamatError
from geocamat.inference.ranks import RankFailed, Ranks

#: How long the ranks wait for each other at the start (torch.distributed barrier).
START_TIMEOUT_S = 600.0


def from_environment(env: Mapping[str, str] | None = None) -> Ranks | None:
    """The ranks a launcher gave this process (torchrun, srun), or None when there is none."""
    env = os.environ if env is None else env
    try:
        if "WORLD_SIZE" in env and "RANK" in env:  # torchrun / torch.distributed.launch
            world = int(env["WORLD_SIZE"])
            local_world = int(env.get("LOCAL_WORLD_SIZE", world))
            return Ranks(int(env["RANK"]), world, int(env.get("LOCAL_RANK", 0)), local_world)
        if "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:  # srun (an sbatch script alone has no step)
            world = int(env["SLURM_STEP_NUM_TASKS"])
            per_node = env.get("SLURM_STEP_TASKS_PER_NODE", "").split("(")[0].split(",")[0]
            local_world = int(per_node) if per_node.isdigit() else world
            return Ranks(int(env["SLURM_PROCID"]), world, int(env.get("SLURM_LOCALID", 0)), local_world)
    except ValueError as exc:
        raise ConfigError(f"the launcher's rank variables are not integers ({exc}): check RANK/WORLD_SIZE or "
                          "SLURM_PROCID/SLURM_STEP_NUM_TASKS") from exc
    return None


def launcher_hint(devices: int, num_nodes: int) -> str:
    """The commands that start a run on several machines."""
    return (f"torchrun --nnodes {num_nodes} --nproc-per-node {devices} --rdzv-backend c10d "
            f"--rdzv-endpoint HOST:29500 $(which geocamat) predict ... on each machine, or srun --nodes "
            f"{num_nodes} --ntasks-per-node {devices} geocamat predict ...")


@dataclass(frozen=True)
class Launch:
    """How a run gets its ranks: ``ranks`` of this process (already meeting the others), or ``spawn`` local
    processes to start; ``owns_group``: this process initialised the process group (and destroys it)."""

    ranks: Ranks | None = None
    spawn: int = 0
    owns_group: bool = False


def resolve(devices: int | None, num_nodes: int | None, env: Mapping[str, str] | None = None) -> Launch:
    """Where this run's ranks come from (see the module docstring); joins a launcher's process group.

    Raises:
        ConfigError: ``num_nodes > 1`` without a launcher, counts below 1, or counts that contradict the
            launcher's.
    """
    for name, value in (("--devices", devices), ("--num-nodes", num_nodes)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        ranks = Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                      int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())))
        _agree(ranks, devices, num_nodes)
        return Launch(ranks)
    ranks = from_environment(env)
    if ranks is not None and ranks.world > 1:
        _agree(ranks, devices, num_nodes)
        _init_group(ranks, env)
        return Launch(ranks, owns_group=True)
    if (num_nodes or 1) > 1:
        raise ConfigError(f"--num-nodes {num_nodes} needs a launcher on each machine: "
                          + launcher_hint(devices or 1, num_nodes))
    if (devices or 1) > 1:
        return Launch(spawn=int(devices))
    return Launch(Ranks())


def _agree(ranks: Ranks, devices: int | None, num_nodes: int | None) -> None:
    asked = (devices or ranks.local_world) * (num_nodes or max(1, ranks.world // max(1, ranks.local_world)))
    if (devices is not None or num_nodes is not None) and asked != ranks.world:
        raise ConfigError(f"the launcher started {ranks.world} processes but --devices/--num-nodes ask for {asked}: "
                          "leave them out under a launcher, or make them agree")


def _init_group(ranks: Ranks, env: Mapping[str, str] | None) -> None:
    """Join the launcher's process group (gloo: only barriers are needed, on CPU or GPU alike)."""
    import torch.distributed as dist

    env = os.environ if env is None else env
    addr, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
    if addr is None:
        addr = _slurm_first_host(env)
    if port is None and "SLURM_JOB_ID" in env:
        port = str(15000 + int(env["SLURM_JOB_ID"]) % 20000)
    if addr is None or port is None:
        raise ConfigError("the ranks cannot meet: set MASTER_ADDR (the first machine) and MASTER_PORT (a free "
                          "port), or launch with torchrun")
    if ranks.rank == 0:
        import sys

        print(f"waiting for the other {ranks.world - 1} process(es) of the run at {addr}:{port} (up to "
              f"{START_TIMEOUT_S / 60:.0f} min)", file=sys.stderr, flush=True)
    _meet(lambda: dist.init_process_group("gloo", init_method=f"tcp://{addr}:{port}", rank=ranks.rank,
                                          world_size=ranks.world, timeout=timedelta(seconds=START_TIMEOUT_S)),
          f"{addr}:{port}", ranks.world)


def _meet(join, where: str, world: int) -> None:
    """Run ``join`` (the blocking meeting of the ranks) in a thread, so that Ctrl-C and SIGTERM stop the wait (a
    signal is not handled while the main thread is blocked in C++); its failure to meet is one line."""
    import threading

    failure: list[BaseException] = []

    def run() -> None:
        try:
            join()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="geocamat-meet", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.2)
    if failure:
        exc = failure[0]
        if isinstance(exc, RuntimeError | OSError):  # torch's DistStoreError, DistNetworkError, timeouts
            raise ConfigError(f"the {world} processes of the run did not all meet at {where} within "
                              f"{START_TIMEOUT_S / 60:.0f} min ({type(exc).__name__}): check that the launcher "
                              "started every rank and that MASTER_ADDR/MASTER_PORT reach the first machine") from exc
        raise exc


def _slurm_first_host(env: Mapping[str, str]) -> str | None:
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodes:
        return None
    import subprocess

    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=30)
        return out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else None
    except (OSError, subprocess.SubprocessError):
        return None


def close(launch: Launch) -> None:
    """Leave the process group this process initialised."""
    if launch.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# -- local ranks started here --------------------------------------------------------------------------

def spawn(fn: Callable, nprocs: int, args: tuple, kwargs: dict, *, cuda: bool) -> None:
    """Run ``fn(*args, ranks=Ranks(r, nprocs, r, nprocs), **kwargs)`` in ``nprocs`` new processes.

    They are started as ``python -m geocamat.inference.launch`` (the call pickled in a temporary file; no
    multiprocessing bootstrap, so a caller's script without a ``__main__`` guard is safe) and meet on a TCP
    store on 127.0.0.1 (a free port); each uses ``1 / nprocs`` of this process's torch threads (at least
    one). When a rank fails the others are stopped; a :class:`geocamat.errors.GeocamatError` of a rank is
    raised again here, the same class, one line.
    """
    import pickle
    import signal
    import subprocess
    import sys
    import tempfile

    import torch

    if cuda and torch.cuda.device_count() < nprocs:
        raise ConfigError(f"--devices {nprocs} asks for {nprocs} GPUs but {torch.cuda.device_count()} are visible: "
                          f"use --devices {torch.cuda.device_count()} or --device cpu")
    threads = max(1, torch.get_num_threads() // nprocs)
    with tempfile.TemporaryDirectory(prefix="geocamat-ranks-") as tmp:
        call = Path(tmp) / "call.pkl"
        with call.open("wb") as f:
            pickle.dump((fn, args, kwargs, threads, _free_port()), f)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        procs = [subprocess.Popen([sys.executable, "-m", "geocamat.inference.launch", str(call), str(r), str(nprocs)],
                                  env=env) for r in range(nprocs)]
        failed = None
        try:
            while failed is None and any(p.poll() is None for p in procs):
                failed = next((r for r, p in enumerate(procs) if p.poll() not in (None, 0)), None)
                time.sleep(0.1)
            if failed is None:
                failed = next((r for r, p in enumerate(procs) if p.returncode != 0), None)
        finally:
            for p in procs:  # a failed or interrupted run stops every rank
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if failed is not None:
            errors = sorted(Path(tmp).glob("error-*.json"))
            if errors:
                name, message = json.loads(errors[0].read_text())
                raise _error(name, message)
            raise RankFailed(rank_failure(failed, procs[failed].returncode))


def rank_failure(rank: int, code: int) -> str:
    """What to tell of rank ``rank`` that ended with exit ``code`` (negative: killed by that signal) and no error."""
    import signal

    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = f"was killed ({name}{': out of memory?' if -code == signal.SIGKILL else ''})"
    else:
        why = f"stopped with exit code {code}"
    return (f"prediction rank {rank} {why}; the windows finished are kept: the same command with --resume "
            "continues from them")


def _worker(call: Path, rank: int, nprocs: int) -> int:
    """One rank started by :func:`spawn`: run the pickled call; returns the exit code."""
    import pickle

    import torch
    import torch.distributed as dist

    with Path(call).open("rb") as f:
        fn, args, kwargs, threads, port = pickle.load(f)
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=nprocs,
                            timeout=timedelta(seconds=START_TIMEOUT_S))
    try:
        fn(*args, ranks=Ranks(rank, nprocs, rank, nprocs), **kwargs)
    except GeocamatError as exc:
        tmp = Path(call).with_name(f"error-{rank}.json.part")
        tmp.write_text(json.dumps([type(exc).__name__, str(exc)]))
        os.replace(tmp, tmp.with_name(f"error-{rank}.json"))
        return 2
    finally:
        dist.destroy_process_group()
    return 0


def _error(name: str, message: str) -> GeocamatError:
    import geocamat.errors as errors

    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, GeocamatError)):
        cls = RankFailed if name == "RankFailed" else GeocamatError
    return cls(message)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":  # a rank started by spawn(): python -m geocamat.inference.launch CALL RANK WORLD
    import sys

    from geocamat.inference.launch import _worker as worker

    sys.exit(worker(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
