"""Units of work on a real Dask LocalCluster (2 worker processes on 127.0.0.1, no mock): the
same tables as serial, a rerun that submits nothing, a remote error that re-raises here, a
worker killed mid-unit that loses nothing, one computation for two clients, and a SLURM job
script rendered from the user's jobqueue configuration.  Marked ``slow`` (worker processes)."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest

from diffred.core import cache, engine
from diffred.core.errors import DiffredError

pytestmark = pytest.mark.slow
cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import tests/


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 2-process LocalCluster whose workers share this test's cache (``DIFFRED_CACHE`` is
    inherited when the workers start)."""
    root = tmp_path_factory.mktemp("engine")
    before = os.environ.get("DIFFRED_CACHE")
    os.environ["DIFFRED_CACHE"] = str(root / "cache")
    engine.use("local:2")
    try:
        engine.client()
        yield root
    finally:
        engine.shutdown()
        engine.use(None)
        if before is None:
            os.environ.pop("DIFFRED_CACHE", None)
        else:
            os.environ["DIFFRED_CACHE"] = before


def test_unknown_setting_is_one_line():
    with pytest.raises(DiffredError, match="valid choices: serial, local:<N>"):
        engine.use("local:zero")


def test_distributed_sweeps_equal_serial_and_a_rerun_submits_nothing(cluster):
    from diffred.studies.diffuse import method as R
    args = dict(models=["efficientnet_lite0"], datasets=["sign_digits"],
                methods=("random", "pca_top"), fractions=[0.01, 0.2, 1.0], seeds=[0, 1],
                train_subset={"n_per_class": 8}, test_subset={"n_per_class": 4},
                resolution=64, max_iter=40)
    distributed = R.run_sweeps(**args, layers=("penultimate", "blocks.5"))
    assert engine.last_run() == {"units": 2, "submitted": 2}
    again = R.run_sweeps(**args, layers=("penultimate", "blocks.5"))
    assert engine.last_run() == {"units": 2, "submitted": 0}          # all cached: none sent
    for kind_dir in (Path(os.environ["DIFFRED_CACHE"]) / "sweep").iterdir():
        for entry in kind_dir.iterdir():
            cache.ArrayStore("sweep").remove(entry.name)               # recompute serially
    engine.use("serial")
    try:
        serial = R.run_sweeps(**args, layers=("penultimate", "blocks.5"))
    finally:
        engine.use("local:2")
    drop = ["probe_seconds"]
    pd.testing.assert_frame_equal(distributed.runs.drop(columns=drop), serial.runs.drop(columns=drop))
    pd.testing.assert_frame_equal(again.runs, distributed.runs)
    pd.testing.assert_frame_equal(distributed.per_class, serial.per_class)


def _boom(spec: dict):
    raise ValueError(f"boom {spec['n']}")


def test_a_failing_unit_reraises_here_with_its_remote_traceback(cluster):
    with pytest.raises(ValueError, match="boom 7") as err:
        engine.run_units(_boom, [{"n": 7}], progress=False)
    assert "_boom" in str(err.getrepr())


def _slow_entry(spec: dict):
    """A unit that writes one cache entry slowly: it marks (with its worker's PID) that its
    temporary folder is half-written, waits, then commits."""
    if "calls" in spec:                               # every execution leaves a line
        with open(spec["calls"], "a") as calls:
            calls.write(f"{os.getpid()}\n")
    store, key = cache.ArrayStore("engine-test"), cache.hash_key({"x": spec["x"]})
    if store.load(key) is None:
        with store.writer(key, {"spec": {"x": spec["x"]}}) as w:
            w.put_table("t", pd.DataFrame({"x": [spec["x"]], "pid": [os.getpid()]}))
            Path(spec["marker"]).write_text(str(os.getpid()))
            time.sleep(spec["seconds"])
    return store.load(key)[0]["t"]


def test_a_worker_killed_mid_unit_loses_nothing(cluster):
    client, root = engine.client(), cluster
    marker = root / "started"
    spec = {"x": 1, "seconds": 6, "marker": str(marker)}
    future = client.submit(_slow_entry, spec, key=engine.unit_key(_slow_entry, spec))
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.2)
    victim = int(marker.read_text())
    marker.unlink()
    os.kill(victim, signal.SIGKILL)                   # mid-unit: its temp entry is half-written
    table = future.result(timeout=300)                # the scheduler ran it again elsewhere
    assert table.x.tolist() == [1] and table.pid.tolist() != [victim]
    store_root = Path(os.environ["DIFFRED_CACHE"])
    assert [k for k, _ in cache.entries(store_root) if k == "engine-test"] == ["engine-test"]
    assert [problem for *_, problem in cache.verify_cache(store_root) if problem] == []
    removed = cache.collect_garbage(store_root)       # the killed writer's temp folder
    assert any(reason == "leftover" and ".tmp-" in path for path, reason in removed)
    assert all(row["leftovers"] == 0 for row in cache.cache_info(store_root))


def test_two_clients_submitting_one_unit_compute_it_once(cluster):
    from distributed import Client
    client, root = engine.client(), cluster
    spec = {"x": 2, "seconds": 3, "marker": str(root / "twice"), "calls": str(root / "calls")}
    other = Client(client.scheduler.address)
    try:
        key = engine.unit_key(_slow_entry, spec)
        first = client.submit(_slow_entry, spec, key=key)
        second = other.submit(_slow_entry, spec, key=key)
        a, b = first.result(timeout=120), second.result(timeout=120)
    finally:
        other.close()
    assert a.pid.tolist() == b.pid.tolist()
    assert len((root / "calls").read_text().splitlines()) == 1     # one task, executed once


def test_slurm_job_script_follows_the_jobqueue_configuration():
    pytest.importorskip("dask_jobqueue")
    import dask
    config = {"jobqueue.slurm.cores": 8, "jobqueue.slurm.memory": "32GB",
              "jobqueue.slurm.walltime": "04:00:00", "jobqueue.slurm.queue": "gpu",
              "jobqueue.slurm.job-extra-directives": ["--gres=gpu:1"],
              "jobqueue.slurm.scheduler-options": {"host": "127.0.0.1", "dashboard_address": None}}
    with dask.config.set(config):
        slurm = engine.slurm_cluster()
        try:
            script = slurm.job_script()
        finally:
            slurm.close()
    assert "#SBATCH -p gpu" in script and "#SBATCH -t 04:00:00" in script
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --cpus-per-task=8" in script
