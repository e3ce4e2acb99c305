"""Swath extraction on the runner: scenes as tasks on a Dask cluster, and a resumed run, give the table of a
local run."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

import swathdata as sd
from tilewise.core.io.vector import zones_from_geometries
from tilewise.core.operations.extract.run import extract

pytest.importorskip("netCDF4")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3-runs")
    paths = [sd.write_olci_product(str(folder), stamp=f"202405{d:02d}T100000", seed=d) for d in range(10, 14)]
    tlat, tlon = sd.geolocation_truth(paths[0])
    zones = zones_from_geometries([shapely.Point(tlon[7, 9], tlat[7, 9]), shapely.Point(tlon[27, 40], tlat[27, 40]),
                                   shapely.Point(tlon[50, 20], tlat[50, 20]).buffer(0.02)], "EPSG:4326")
    local = folder / "local.parquet"
    extract(paths, zones, str(local), "mean,count", variables="CHL_NN,Oa08_reflectance", mask_flags="CLOUD",
            workers=2)
    return paths, zones, pq.read_table(local).to_pandas()


def test_dask_cluster_gives_the_local_table(scenes, tmp_path):
    from distributed import Client, LocalCluster
    paths, zones, local = scenes
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        report = extract(paths, zones, str(tmp_path / "dask.parquet"), "mean,count",
                         variables="CHL_NN,Oa08_reflectance", mask_flags="CLOUD", scheduler=client)
        ran = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
    assert report.tiles == 4 and ran >= 4
    assert pq.read_table(tmp_path / "dask.parquet").to_pandas().equals(local)


def test_an_interrupted_run_resumes_with_its_finished_scenes(scenes, tmp_path):
    paths, zones, local = scenes
    out = str(tmp_path / "ts.parquet")

    def stop_after_two(done, total):
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(paths, zones, out, "mean,count", variables="CHL_NN,Oa08_reflectance", mask_flags="CLOUD",
                workers=1, resume=True, progress=stop_after_two)
    report = extract(paths, zones, out, "mean,count", variables="CHL_NN,Oa08_reflectance", mask_flags="CLOUD",
                     workers=1, resume=True)
    assert report.reused == 2 and report.tiles == 4
    assert pq.read_table(out).to_pandas().equals(local)
    # another flag set is another job: nothing is reused
    report = extract(paths, zones, out, "mean,count", variables="CHL_NN,Oa08_reflectance", workers=1, resume=True)
    assert report.reused == 0
    unflagged = pq.read_table(out).to_pandas()
    assert local["mean"].isna().sum() == 8 and unflagged["mean"].isna().sum() == 0    # point 1 is in the CLOUD rows


@pytest.fixture(scope="module")
def one_scene(tmp_path_factory):
    """One scene and many features (points, polygons, a line): its features run as chunks on 2 workers."""
    folder = tmp_path_factory.mktemp("s3-one")
    path = sd.write_olci_product(str(folder), stamp="20240520T100000", seed=3)
    tlat, tlon = sd.geolocation_truth(path)
    rng = np.random.default_rng(5)
    r, c = rng.integers(0, 80, 60), rng.integers(0, 56, 60)
    geoms = [shapely.Point(tlon[i, j] + 1e-4, tlat[i, j]) for i, j in zip(r, c)]
    geoms += [shapely.Point(tlon[i, j], tlat[i, j]).buffer(0.01) for i, j in ((10, 10), (40, 30), (70, 20))]
    geoms += [shapely.LineString([(tlon[5, 5], tlat[5, 5]), (tlon[60, 40], tlat[60, 40])]), shapely.Point(0, 0)]
    zones = zones_from_geometries(geoms, "EPSG:4326")
    alone = folder / "alone.parquet"
    report = extract([path], zones, str(alone), "mean,count,max", variables="CHL_NN,Oa08_reflectance",
                     mask_flags="CLOUD", workers=1)
    assert report.tiles == 1
    return path, zones, pq.read_table(alone).to_pandas()


def test_one_scene_spreads_over_the_workers_with_the_same_table(one_scene, tmp_path):
    from tilewise.core.runtime.executor import cpu_count
    path, zones, alone = one_scene
    report = extract([path], zones, str(tmp_path / "two.parquet"), "mean,count,max",
                     variables="CHL_NN,Oa08_reflectance", mask_flags="CLOUD", workers=2)
    assert report.tiles == min(2, cpu_count())      # one scene: one chunk of its features per worker
    two = pq.read_table(tmp_path / "two.parquet").to_pandas()
    assert two.equals(alone)
    assert alone["mean"].notna().sum() > 100 and alone["reason"].notna().any()


def test_one_scene_in_chunks_on_dask_resumes(one_scene, tmp_path):
    from distributed import Client, LocalCluster
    from tilewise.core.runtime.executor import cpu_count
    if cpu_count() < 2:
        pytest.skip("one chunk per scene on a 1-core machine")
    path, zones, alone = one_scene
    out = str(tmp_path / "dask.parquet")

    def stop_after_one(done, total):
        if done >= 1:
            raise KeyboardInterrupt

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        with pytest.raises(KeyboardInterrupt):
            extract([path], zones, out, "mean,count,max", variables="CHL_NN,Oa08_reflectance", mask_flags="CLOUD",
                    scheduler=client, resume=True, progress=stop_after_one)
        report = extract([path], zones, out, "mean,count,max", variables="CHL_NN,Oa08_reflectance",
                         mask_flags="CLOUD", scheduler=client, resume=True)
    assert report.tiles == 2 and report.reused == 1
    assert pq.read_table(out).to_pandas().equals(alone)


def test_a_scene_geolocation_is_read_once_per_process_until_its_file_changes(one_scene):
    import os
    from tilewise.core.io.swath import open_swath
    from tilewise.core.operations.swath.extract import feature_chunks, plan_swath, scene_geolocation, SwathOptions
    path, zones, _ = one_scene
    scene = open_swath(path)
    first = scene_geolocation(scene)
    assert scene_geolocation(scene) is first
    plan, _, _ = plan_swath([path], zones, SwathOptions(variables="CHL_NN"))
    chunks = feature_chunks(plan, 3)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(plan.kind)))
    assert all(len(c) for c in chunks)
    stamp = os.stat(scene.lat.path).st_mtime_ns
    os.utime(scene.lat.path, ns=(stamp + 10 ** 9, stamp + 10 ** 9))
    again = scene_geolocation(scene)
    assert again is not first and np.array_equal(again.lat, first.lat, equal_nan=True)


def test_later_scenes_opened_by_their_task_use_their_own_headers(tmp_path):
    """Scenes after the first with the same files are described from it in planning and opened by their
    task: a scene whose packing differs reads with its own; one that lacks a variable is refused by name."""
    import netCDF4
    from tilewise.core.errors import InputError
    paths = [sd.write_olci_product(str(tmp_path), stamp=f"202405{d:02d}T100000", seed=d) for d in (10, 11)]
    with netCDF4.Dataset(f"{paths[1]}/Oa08_reflectance.nc", "a") as f:
        f["Oa08_reflectance"].scale_factor = sd.OA_SCALE * 2
    tlat, tlon = sd.geolocation_truth(paths[0])
    zones = zones_from_geometries([shapely.Point(tlon[7, 9], tlat[7, 9]),
                                   shapely.Point(tlon[50, 20], tlat[50, 20]).buffer(0.02)], "EPSG:4326")
    both, alone = str(tmp_path / "both.parquet"), str(tmp_path / "alone.parquet")
    extract(paths, zones, both, "mean,count", variables="Oa08_reflectance,CHL_NN", workers=2)
    extract(paths[1:], zones, alone, "mean,count", variables="Oa08_reflectance,CHL_NN", workers=1)
    second = pq.read_table(both).to_pandas()
    second = second[second.source == paths[1].rsplit("/", 1)[-1]].reset_index(drop=True)
    assert second.equals(pq.read_table(alone).to_pandas())
    first = pq.read_table(both).to_pandas()
    first = first[(first.source != paths[1].rsplit("/", 1)[-1]) & (first.variable == "Oa08_reflectance")]
    raw = (first["mean"].to_numpy() - sd.OA_OFFSET) / sd.OA_SCALE
    doubled = second[second.variable == "Oa08_reflectance"]["mean"].to_numpy()
    np.testing.assert_allclose(doubled, raw * sd.OA_SCALE * 2 + sd.OA_OFFSET)
    with netCDF4.Dataset(f"{paths[1]}/chl_nn.nc", "a") as f:
        f.renameVariable("CHL_NN", "CHL_XX")
    with pytest.raises(InputError, match=r"S3A_OL_2_WFR____20240511.*no variable 'CHL_NN'"):
        extract(paths, zones, str(tmp_path / "bad.parquet"), "mean", variables="CHL_NN", workers=1)
