"""Prediction across ranks: the split of the plan, where ranks come from, and maps identical to one process."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_helpers import Counting, Killed, make_bundle, make_raster  # noqa: E402
from inference_helpers import read_bands as read

from geocamat.errors import ConfigError  # noqa: E402
from geocamat.inference.heads import head_for  # noqa: E402
from geocamat.inference.landuse import predict_landuse  # noqa: E402
from geocamat.inference.launch import from_environment, resolve  # noqa: E402
from geocamat.inference.manifest import PARTIAL  # noqa: E402
from geocamat.inference.plan import UnitSizes  # noqa: E402
from geocamat.inference.ranks import RankFailed, Ranks, Segment, split_units  # noqa: E402

OUTPUTS = ("landuse.tif", "confidence.tif", "cam.tif", "probabilities.tif", "partial_bands.tif")
#: one column block of 5 bands (32 rows) on a 100 x 160 scene with 16 px tiles: rank 1 starts mid-block
UNITS = UnitSizes(band_rows=32, block_cols=128)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


def run(bundle, images, out, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("units", UNITS)
    kw.setdefault("write_probabilities", True)
    kw.setdefault("batch_size", 8)
    return predict_landuse(bundle, [str(i) for i in images], out, **kw)


# -- the split ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("blocks,bands,world", [(1, 5, 2), (3, 4, 2), (2, 7, 3), (1, 2, 4), (4, 1, 3), (2, 8, 1)])
def test_every_unit_belongs_to_exactly_one_rank_in_contiguous_stretches(blocks, bands, world):
    rng = np.random.default_rng(blocks * 100 + bands * 10 + world)
    weights = rng.integers(1, 20, size=(blocks, bands)).tolist()
    split = split_units(weights, world)
    assert len(split) == world
    owners = {}
    for r, segs in enumerate(split):
        for seg in segs:
            assert 0 <= seg.start < seg.stop <= bands
            for i in range(seg.start, seg.stop):
                assert (seg.block, i) not in owners
                owners[(seg.block, i)] = r
    assert set(owners) == {(j, i) for j in range(blocks) for i in range(bands)}
    # in plan order (block by block, top to bottom) the owners never decrease: one stretch per rank
    order = [owners[(j, i)] for j in range(blocks) for i in range(bands)]
    assert order == sorted(order)


def test_the_split_balances_work_and_warms_up_only_below_the_top():
    split = split_units([[10] * 8], 2)
    assert split == [[Segment(0, 0, 4)], [Segment(0, 4, 8)]]
    assert split[0][0].warmup is None and split[1][0].warmup == 3
    # a heavy first band: rank 0 takes less of the rest
    assert split_units([[50, 10, 10, 10, 10, 10]], 2)[0] == [Segment(0, 0, 1)]
    # more ranks than units: some ranks get nothing, no unit is lost
    split = split_units([[1, 1]], 4)
    assert sum(len(s) for s in split) == 2 and [] in split
    assert split_units([[7]], 2) == [[Segment(0, 0, 1)], []]  # a lone unit stays on rank 0, which assembles
    # without any planned tile (an AOI that skips everything), units are still split by count
    assert split_units([[0, 0, 0, 0]], 2) == [[Segment(0, 0, 2)], [Segment(0, 2, 4)]]
    # several blocks: a stretch runs over a block's end into the next one (a warm-up only where a block is cut)
    split = split_units([[1] * 3, [1] * 3], 2)
    assert split == [[Segment(0, 0, 3)], [Segment(1, 0, 3)]]
    middle = split_units([[1] * 3, [1] * 3], 3)[1]
    assert middle == [Segment(0, 2, 3), Segment(1, 0, 1)] and [s.warmup for s in middle] == [1, None]


# -- where the ranks come from --------------------------------------------------------------------------

def test_ranks_come_from_torchrun_or_srun_and_not_from_an_sbatch_script_alone():
    assert from_environment({}) is None
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert from_environment(torchrun) == Ranks(3, 4, 1, 2)
    srun = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
            "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_NTASKS": "8"}
    assert from_environment(srun) == Ranks(5, 8, 1, 4)
    # inside an sbatch script (no srun step) the job's task count is not this process's world
    assert from_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) is None
    with pytest.raises(ConfigError, match="not integers"):
        from_environment({"RANK": "a", "WORLD_SIZE": "2"})


def test_several_machines_without_a_launcher_are_refused_with_the_command_to_use(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="torchrun --nnodes 2 --nproc-per-node 4"):
        resolve(4, 2)
    with pytest.raises(ConfigError, match="--devices must be >= 1"):
        resolve(0, None)
    assert resolve(3, None).spawn == 3 and resolve(None, None).ranks == Ranks()
    # under a launcher, counts that contradict it are refused
    with pytest.raises(ConfigError, match="launcher started 2 processes"):
        resolve(4, None, {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})


def refuse_on_every_rank(*, ranks: Ranks) -> None:
    """Stands for a prediction whose input is refused (as every rank would refuse it)."""
    raise ConfigError(f"bad input seen by rank {ranks.rank} of {ranks.world}")


@pytest.mark.slow  # ~20 s on the loaded 2-vCPU machine; run with -m slow
def test_an_error_of_the_local_ranks_comes_back_as_one_line_of_the_same_class():
    from geocamat.inference.launch import spawn

    with pytest.raises(ConfigError, match="bad input seen by rank 0 of 2"):
        spawn(refuse_on_every_rank, 2, (), {}, cuda=False)


# -- maps across ranks ------------------------------------------------------------------------------------

def test_two_processes_map_pixel_identical_to_one(tmp_path):
    bundle = make_bundle(tile=16)
    img = make_raster(tmp_path / "img.tif", 100, 160, collar=2, missing_frame=6)
    ref = run(bundle, [img], tmp_path / "ref")
    assert ref["plan"]["units"] >= 4
    report = run(bundle, [img], tmp_path / "two", devices=2)  # two CPU processes started here
    assert report["ranks"]["world"] == 2 and len(report["ranks"]["per_rank"]) == 2
    assert all(r["tiles_processed"] > 0 for r in report["ranks"]["per_rank"])
    for name in OUTPUTS:
        np.testing.assert_array_equal(read(tmp_path / "ref" / name), read(tmp_path / "two" / name), err_msg=name)
    for key in ("tiles_planned", "tiles_processed", "skipped_no_data"):
        assert report["tiles"][key] == ref["tiles"][key]
    # rank 1 starts mid-block: the tiles of the band above that reach into its carry are computed again
    # (the batches holding them), less than a band (5 bands here)
    extra = report["tiles"]["recomputed_at_seams"] - ref["tiles"]["recomputed_at_seams"]
    assert 0 < extra < ref["tiles"]["tiles_processed"] / 5
    assert report["classes"] == ref["classes"]
    assert report["pixels"] == ref["pixels"] and report["pixels"]["partial_bands"] > 0
    assert not (tmp_path / "two" / PARTIAL).exists()


@dataclass(frozen=True)
class ThreadRanks(Ranks):
    """Ranks played by threads of this process (a threading barrier instead of torch.distributed)."""

    meet: threading.Barrier | None = None

    def barrier(self) -> None:
        self.meet.wait(timeout=60)






def on_thread_ranks(world: int, call) -> list:
    """``call(ranks)`` on ``world`` ranks played by threads; returns each rank's result or exception."""
    meet = threading.Barrier(world)
    results: list = [None] * world

    def rank(r):
        try:
            results[r] = call(ThreadRanks(r, world, r, world, meet))
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            results[r] = exc
            meet.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def run_ranks(bundle, images, out, heads, **kw) -> list:
    """One run over ``len(heads)`` ranks played by threads; returns each rank's report or exception."""
    return on_thread_ranks(len(heads), lambda ranks: run(bundle, images, out, head=heads[ranks.rank], ranks=ranks,
                                                         **kw))


def test_a_two_rank_run_killed_on_one_rank_stops_both_and_resumes_to_the_same_map(tmp_path):
    bundle = make_bundle(tile=16)
    img = make_raster(tmp_path / "img.tif", 100, 160, collar=2, missing_frame=6)
    whole = Counting(head_for(bundle))
    ref = run(bundle, [img], tmp_path / "ref", head=whole)
    out = tmp_path / "out"
    first = [Counting(head_for(bundle)), Counting(head_for(bundle), stop_after=whole.tiles // 2)]
    results = run_ranks(bundle, [img], out, first)
    assert isinstance(results[1], Killed)
    assert isinstance(results[0], RankFailed) and "rank 1 failed" in str(results[0])  # rank 0 does not hang
    rank1 = json.loads((out / PARTIAL / "manifest-rank1.json").read_text())
    assert rank1["done"] and "Killed" in rank1["failed"]
    second = [Counting(head_for(bundle)), Counting(head_for(bundle))]
    results = run_ranks(bundle, [img], out, second, resume=True)
    report, other = results
    assert isinstance(report, dict) and isinstance(other, dict), results
    assert other["rank"] == 1 and report["resumed"]
    for name in OUTPUTS:
        np.testing.assert_array_equal(read(tmp_path / "ref" / name), read(out / name), err_msg=name)
    assert report["classes"] == ref["classes"]
    assert report["pixels"] == ref["pixels"] and report["pixels"]["partial_bands"] > 0
    assert report["tiles"]["tiles_processed"] == ref["tiles"]["tiles_processed"]
    # the units finished before the kill were kept; what was computed twice is bounded (warm-up bands, the
    # units in flight when rank 1 died)
    assert sum(h.tiles for h in second) < whole.tiles
    assert sum(h.tiles for h in first + second) - whole.tiles <= 0.5 * whole.tiles


@pytest.mark.slow  # ~20 s on the loaded 2-vCPU machine; run with -m slow
def test_a_rerun_with_one_process_resumes_a_two_rank_run(tmp_path):
    bundle = make_bundle(tile=16)
    img = make_raster(tmp_path / "img.tif", 100, 160, collar=2, missing_frame=6)
    whole = Counting(head_for(bundle))
    run(bundle, [img], tmp_path / "ref", head=whole)
    out = tmp_path / "out"
    # both ranks die after their first unit: the finished units have a gap (band 1) between them
    run_ranks(bundle, [img], out, [Counting(head_for(bundle), stop_after=whole.tiles // 4),
                                   Counting(head_for(bundle), stop_after=whole.tiles // 2)])
    kept = sum(len(json.loads(p.read_text())["done"]) for p in (out / PARTIAL).glob("manifest*.json"))
    assert kept >= 2
    single = Counting(head_for(bundle))
    report = run(bundle, [img], out, head=single, resume=True)
    assert report["resumed"] and single.tiles < whole.tiles
    for name in OUTPUTS:
        np.testing.assert_array_equal(read(tmp_path / "ref" / name), read(out / name), err_msg=name)


def test_without_overlap_ranks_need_no_warm_up(tmp_path):
    bundle = make_bundle(tile=16)
    img = make_raster(tmp_path / "img.tif", 100, 160, collar=2, missing_frame=6)
    ref = run(bundle, [img], tmp_path / "ref", overlap=0.0)
    report, other = run_ranks(bundle, [img], tmp_path / "two", [head_for(bundle), head_for(bundle)], overlap=0.0)
    assert isinstance(report, dict) and isinstance(other, dict), (report, other)
    assert other["tiles_processed"] > 0
    for name in OUTPUTS:
        np.testing.assert_array_equal(read(tmp_path / "ref" / name), read(tmp_path / "two" / name), err_msg=name)
    assert report["tiles"] == ref["tiles"]  # no carry, so nothing computed twice


def test_a_killed_rank_is_told_with_the_way_to_continue():
    """A rank killed (kill -9, the kernel's OOM killer) left no error of its own: one line with the signal and
    --resume (was 'internal error (RuntimeError: prediction rank 1 stopped with exit code -9); this is a bug')."""
    import signal

    from geocamat.failures import user_error
    from geocamat.inference.launch import rank_failure
    from geocamat.inference.ranks import RankFailed

    text = rank_failure(1, -signal.SIGKILL)
    assert text.startswith("prediction rank 1 was killed (SIGKILL: out of memory?)") and "--resume" in text
    assert "stopped with exit code 3" in rank_failure(0, 3)
    assert user_error(RankFailed(text)) is not None  # a user error: exit 2, not "this is a bug"


def test_ranks_that_never_meet_end_in_one_line_and_the_wait_hears_ctrl_c(monkeypatch):
    """A launcher's other rank that never comes: a line says what is awaited, the end of the wait is one line
    (was 'internal error (DistStoreError ...)' after 10 silent minutes); Ctrl-C stops the wait (it was deaf)."""
    import os
    import signal
    import socket
    import threading
    import time

    import geocamat.inference.launch as launch
    from geocamat.errors import ConfigError
    from geocamat.inference.ranks import Ranks

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(launch, "START_TIMEOUT_S", 2.0)
    start = time.monotonic()
    with pytest.raises(ConfigError, match="processes of the run did not all meet at 127.0.0.1"):
        launch._init_group(Ranks(0, 2, 0, 2), {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    assert time.monotonic() - start < 30
    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        launch._meet(lambda: time.sleep(20), "here", 2)
    assert time.monotonic() - start < 5
