"""Cached CAMAT maps saved in checkpoints: a resumed run keeps the maps it had and does not recompute them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geocamat.camat import CAMAT

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread

SPEC = {"name": "camnet", "in_channels": 3, "num_classes": 3, "tile_size": 16, "arch": "camnet-s"}


def _task(**camat):
    from geocamat.tasks.landuse.module import LandUseTask

    options = dict(p=0.5, warmup=0.0, tau=0.6, source="cached", cache_miss="fresh", cache_update="all") | camat
    torch.manual_seed(0)  # the same initial weights in every run
    return LandUseTask(SPEC, CAMAT(**options), lr=1e-3)


def _loader():
    from torch.utils.data import DataLoader

    from geocamat.tasks.landuse.module import TileDataset

    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(40, 3, 16, 16, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    return DataLoader(TileDataset(images, labels), batch_size=8, shuffle=True)


def _fit(task, epochs: int, folder: Path | None = None, resume: Path | None = None, stop_after: int = 0) -> None:
    """Train ``epochs`` epochs (interrupted after ``stop_after`` epochs if > 0, as a killed run)."""
    import lightning as L

    class Stop(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            trainer.should_stop = trainer.current_epoch + 1 >= stop_after

    callbacks = [Stop()] if stop_after else []
    if folder is not None:  # as the training workflow: checkpoints/last.ckpt after every epoch
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=folder, filename="last", monitor=None,
                                                             save_last=False, enable_version_counter=False))
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, callbacks=callbacks,
                        enable_checkpointing=folder is not None, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(task, _loader(), ckpt_path=str(resume) if resume else None)


class FreshCount:
    """Counts the samples whose maps a CAMAT computes with an extra forward (cache misses)."""

    def __init__(self, reg: CAMAT) -> None:
        self.samples, inner = 0, reg.maps

        def maps(images, targets, model):
            self.samples += images.shape[0]
            return inner(images, targets, model)

        reg.maps = maps


def test_cache_state_is_compact_and_restores_tensor_equal():
    reg = CAMAT(p=1.0, warmup=0.0, source="cached", cache_update="all")
    head = torch.nn.Linear(4, 3)
    reg.observe(torch.randn(5, 4, 8, 8), head, torch.tensor([0, 1, 2, 0, 1]), sample_ids=torch.tensor([3, 7, 0, 9, 30]))
    state = reg.state_dict()
    assert state["cache_maps"].dtype == torch.float16 and state["cache_maps"].shape == (5, 8, 8)
    assert state["cache_ids"].dtype == torch.int32 and state["cache_ids"].tolist() == [0, 3, 7, 9, 30]
    back = CAMAT(p=1.0, source="cached")
    back.load_state_dict(state)
    assert torch.equal(back._cache, reg._cache) and torch.equal(back._seen, reg._seen)
    back.load_state_dict({})
    assert back._cache is None
    with pytest.raises(ValueError, match="cache_maps"):
        back.load_state_dict({"cache_ids": state["cache_ids"]})
    # two ranks' caches: each sample's map from the first rank that has it
    other = CAMAT(p=1.0, warmup=0.0, source="cached", cache_update="all")
    other.observe(torch.randn(2, 4, 8, 8), head, torch.tensor([0, 1]), sample_ids=torch.tensor([7, 41]))
    merged = CAMAT(p=1.0, source="cached")
    merged.load_state_dict(CAMAT.merge_states([state, other.state_dict()]))
    assert merged._seen.nonzero().flatten().tolist() == [0, 3, 7, 9, 30, 41]
    assert torch.equal(merged._cache[7], reg._cache[7]) and torch.equal(merged._cache[41], other._cache[41])


def test_a_resumed_run_keeps_its_cached_maps_and_does_not_recompute_them(tmp_path):
    whole = _task()
    _fit(whole, 3)  # uninterrupted, for reference

    first = _task()
    _fit(first, 3, folder=tmp_path / "checkpoints", stop_after=2)
    saved = first.regulariser._cache.clone(), first.regulariser._seen.clone()
    assert saved[1][:40].all()  # every sample has a map after two epochs (cache_update="all")
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1  # the epoch-2 checkpoint loads weights-only

    resumed = _task()
    loaded = {}
    inner = resumed.on_load_checkpoint

    def on_load(ckpt):  # the cache as the resumed run starts with it
        inner(ckpt)
        loaded["cache"], loaded["seen"] = resumed.regulariser._cache.clone(), resumed.regulariser._seen.clone()

    resumed.on_load_checkpoint = on_load
    fresh = FreshCount(resumed.regulariser)
    _fit(resumed, 3, resume=checkpoint)
    assert torch.equal(loaded["cache"], saved[0]) and torch.equal(loaded["seen"], saved[1])
    assert fresh.samples == 0  # every map came from the cache
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the uninterrupted run's weights

    # the same resume without the maps in the checkpoint (as before) recomputes them
    ckpt = torch.load(checkpoint, weights_only=True)
    del ckpt["geocamat"]["regulariser"]
    torch.save(ckpt, tmp_path / "no_maps.ckpt")
    forgetful = _task()
    fresh = FreshCount(forgetful.regulariser)
    _fit(forgetful, 3, resume=tmp_path / "no_maps.ckpt")
    assert fresh.samples > 0
    assert not all(torch.equal(a, b) for a, b in zip(forgetful.model.state_dict().values(),
                                                     whole.model.state_dict().values(), strict=True))


def _rank_saves(rank: int, world: int, init: str, out: str) -> None:
    """One DDP rank (gloo) holding the maps of its own samples saves a checkpoint as Lightning does on every
    rank; rank 0 writes what went into it."""
    from types import SimpleNamespace

    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        task = _task()
        task._trainer = SimpleNamespace(world_size=world)
        head = torch.nn.Linear(4, 3)
        ids = torch.tensor([rank, 10 + rank, 20])  # sample 20 was seen by both ranks
        task.regulariser.observe(torch.full((3, 4, 8, 8), float(rank + 1)).add_(torch.randn(3, 4, 8, 8)), head,
                                 torch.tensor([0, 1, 2]), sample_ids=ids)
        own = task.regulariser.state_dict()
        checkpoint: dict = {}
        task.on_save_checkpoint(checkpoint)
        if rank == 0:
            torch.save({"merged": checkpoint["geocamat"]["regulariser"], "own": own}, out)
        torch.distributed.barrier()  # neither rank tears gloo down while the other still uses it (SIGABRT 1 in 6)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # two spawned processes: ~25 s on the loaded 2-vCPU machine
def test_ddp_ranks_caches_are_merged_into_the_checkpoint(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "state.pt"
    mp.spawn(_rank_saves, args=(2, f"file://{tmp_path / 'rendezvous'}", str(out)), nprocs=2, join=True)
    saved = torch.load(out, weights_only=True)
    merged = CAMAT(source="cached")
    merged.load_state_dict(saved["merged"])
    assert merged._seen.nonzero().flatten().tolist() == [0, 1, 10, 11, 20]  # both ranks' samples
    rank0 = CAMAT(source="cached")
    rank0.load_state_dict(saved["own"])
    for i in (0, 10, 20):  # rank 0's maps are kept where both ranks had one
        assert torch.equal(merged._cache[i], rank0._cache[i])
