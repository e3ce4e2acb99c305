"""Swath extraction on the runner: scenes as tasks on a Dask cluster, and a resumed run, give the table of a
local run."""

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
