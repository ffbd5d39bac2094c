"""`cvstyle apply --ray` on a real Ray cluster: a head and a worker node started here with
`ray start` on 127.0.0.1, and stopped by the tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvstyle import distributed
from cvstyle.cli import main
from cvstyle.errors import ImageError

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
RAY = Path(sys.executable).with_name("ray")
# Ray's own switch for clusters on one machine: node addresses stay 127.0.0.1 (else Ray
# swaps 127.0.0.1 for the machine's network address).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
# `ray start` for the second node: under the switch above Ray refuses a second node, so
# this one process lifts that check and keeps its own address on the loopback.
JOIN = """
import sys
import ray._private.ray_constants as constants
import ray._private.services as services
constants.ENABLE_RAY_CLUSTER = True
services.get_node_ip_address = lambda address=None: "127.0.0.1"
from ray.scripts.scripts import main
sys.argv = ["ray", "start", *sys.argv[1:]]
main()
"""
STARTUP_S = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _processes(marker: str) -> dict[int, str]:
    """Processes whose command line holds ``marker``, with their descendants: pid -> title."""
    parents, titles = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                titles[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = {pid for pid, title in titles.items() if marker in title}
    while True:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        if not more:
            return {pid: titles[pid] for pid in found}
        found |= more


def _stop(marker: str) -> None:
    pids = _processes(marker)
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 15)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    if not sys.platform.startswith("linux") or not RAY.exists():
        pytest.skip("needs Linux and the ray command (pip install -e '.[ray]')")
    temp = tempfile.mkdtemp(prefix="cvr", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, **RAY_ENV}
    address = f"127.0.0.1:{_free_port()}"
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run(
            [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={address.split(':')[1]}",
             f"--temp-dir={temp}", "--include-dashboard=false", *common],
            env=env, check=True, capture_output=True, timeout=STARTUP_S,
        )
        subprocess.run(
            [sys.executable, "-c", JOIN, f"--address={address}", *common],
            env=env, check=True, capture_output=True, timeout=STARTUP_S,
        )
        yield address, temp
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _cvstyle(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from cvstyle.cli import run; run()", *args],
        cwd=cwd, env={**os.environ, **RAY_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=STARTUP_S)
    return process.returncode, out, err


def _photos(folder: Path, count: int, size=(96, 72)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cat = cv2.imread(str(SAMPLES / "chelsea.png"))
    rng = np.random.default_rng(count)
    paths = []
    for i in range(count):
        photo = cv2.resize(np.roll(cat, 37 * i, axis=1), size, interpolation=cv2.INTER_AREA)
        photo = cv2.add(photo, rng.integers(0, 30, photo.shape, dtype=np.uint8))
        paths.append(folder / f"p{i:03d}.jpg")
        assert cv2.imwrite(str(paths[-1]), photo)
    return paths


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _written(stdout: str) -> list[str]:
    return [Path(line.split("wrote ", 1)[1]).name for line in stdout.splitlines() if "wrote " in line]


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, instance_norm_model) -> Path:
    """Photos of several kinds, and files apply refuses, with outputs made by local apply."""
    work = tmp_path_factory.mktemp("mixed")
    photos = work / "photos"
    _photos(photos, 4, (80, 60))
    cat = cv2.resize(cv2.imread(str(SAMPLES / "chelsea.png")), (70, 50))
    alpha = np.full(cat.shape[:2], 128, np.uint8)
    assert cv2.imwrite(str(photos / "see_through.png"), np.dstack([cat, alpha]))
    assert cv2.imwrite(str(photos / "deep.png"), cat.astype(np.uint16) * 257)
    (photos / "notes.jpg").write_bytes(b"hello, this is text\n")
    (photos / "empty.png").write_bytes(b"")
    ok, jpeg = cv2.imencode(".jpg", cat)
    (photos / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    return work


def _summary(stderr: str) -> list[str]:
    """apply's end-of-job lines, without the progress bar."""
    lines = re.split(r"[\r\n]+", stderr)
    return [line for line in lines if re.match(r"cvstyle: |  \S", line) and not re.match(r"\s*\d+%\|", line)]


def _local_apply(work: Path, model: Path, out: str, capsys) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(work)
    try:
        code = main(["apply", "photos", "-m", str(model), "-o", out, "--size", "64"])
    finally:
        os.chdir(old)
    return code, capsys.readouterr().err


def test_cluster_outputs_equal_local_apply_and_bad_inputs_fail_alike(cluster, mixed_folder, instance_norm_model, capsys):
    address, _ = cluster
    local_code, local_err = _local_apply(mixed_folder, instance_norm_model, "local", capsys)
    code, out, err = _finish(_cvstyle(
        "apply", "photos", "-m", str(instance_norm_model), "-o", "ray", "--size", "64", "--ray", address,
        cwd=mixed_folder,
    ))
    assert code == local_code == 2, err
    assert _summary(err) == _summary(local_err)
    assert "3 of 9 jobs failed" in _summary(local_err)[0] and len(_summary(local_err)) == 4
    names = _outputs(mixed_folder / "local")
    assert names == _outputs(mixed_folder / "ray") and len(names) == 6
    assert "see_through_instance_norm_fixture.png" in names
    assert sorted(_written(out)) == names
    for name in names:
        local = cv2.imread(str(mixed_folder / "local" / name), cv2.IMREAD_UNCHANGED)
        remote = cv2.imread(str(mixed_folder / "ray" / name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(local, remote), name


def test_a_killed_worker_has_its_images_retried(cluster, tmp_path, instance_norm_model):
    address, marker = cluster
    photos = _photos(tmp_path / "photos", 40, (240, 180))
    job = _cvstyle("apply", "photos", "-m", str(instance_norm_model), "-o", "out", "--ray", address, cwd=tmp_path)
    out_dir = tmp_path / "out"
    deadline = time.monotonic() + STARTUP_S
    while not (out_dir.is_dir() and any(p.suffix == ".jpg" for p in out_dir.iterdir())):
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.05)
    actors = [pid for pid, title in _processes(marker).items() if "FileStylizer" in title]
    assert actors
    os.kill(actors[0], signal.SIGKILL)
    done_at_kill = len(_outputs(out_dir))
    code, out, err = _finish(job)
    assert code == 0, err
    expected = [f"{p.stem}_instance_norm_fixture.jpg" for p in photos]
    assert done_at_kill < len(expected)
    assert _outputs(out_dir) == expected  # each once, no temporary file left
    assert sorted(_written(out)) == expected  # each reported once
    for name in expected:
        assert cv2.imread(str(out_dir / name)).shape == (180, 240, 3), name


def test_interrupted_job_finishes_with_skip_existing(cluster, tmp_path, instance_norm_model):
    address, _ = cluster
    photos = _photos(tmp_path / "photos", 30, (200, 150))
    args = ["apply", "photos", "-m", str(instance_norm_model), "-o", "out", "--ray", address]
    job = _cvstyle(*args, cwd=tmp_path)
    out_dir = tmp_path / "out"
    deadline = time.monotonic() + STARTUP_S
    while not (out_dir.is_dir() and len(_outputs(out_dir)) >= 3):
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)
    code, _, err = _finish(job)
    assert code == 130, err
    expected = [f"{p.stem}_instance_norm_fixture.jpg" for p in photos]
    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir() if not p.name.startswith(".")}
    assert 3 <= len(before) < len(expected)
    code, out, err = _finish(_cvstyle(*args, "--skip-existing", cwd=tmp_path))
    assert code == 0, err
    assert f"{len(before)} outputs exist already" in err
    assert sorted(_written(out)) == sorted(set(expected) - set(before))  # nothing done twice
    assert _outputs(out_dir) == expected  # nothing missing, no temporary file left
    assert all((out_dir / name).stat().st_mtime_ns == stamp for name, stamp in before.items())


def test_without_the_extra_ray_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    _photos(tmp_path / "photos", 1)
    assert main(["apply", "photos", "--ray"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "cvstyle: error: --ray needs Ray Data, which is not installed: pip install 'cvstyle[ray]'"
    assert not (tmp_path / "p000_sketch.jpg").exists()


def test_a_bad_model_or_a_missing_engine_fails_once_before_ray_starts(tmp_path, monkeypatch, capsys):
    ray = pytest.importorskip("ray")

    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: pytest.fail("Ray was started"))
    monkeypatch.chdir(tmp_path)
    _photos(tmp_path / "photos", 3)
    (tmp_path / "broken.t7").write_bytes(b"not a torch7 file" * 8)
    assert main(["apply", "photos", "-m", "broken.t7", "--ray"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.t7" in err, err
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    assert main(["apply", "photos", "--engine", "openvino", "--ray"]) == 2
    assert capsys.readouterr().err.strip() == (
        "cvstyle: error: the openvino engine needs openvino: pip install -e '.[openvino]'"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.t7", "photos"]


def test_cluster_options_need_ray(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _photos(tmp_path / "photos", 1)
    assert main(["apply", "photos", "--gpus-per-actor", "1"]) == 2  # an option error
    assert "go with --ray" in capsys.readouterr().err


def test_skip_existing_without_ray(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _photos(tmp_path / "photos", 3)
    assert main(["apply", "photos/p001.jpg"]) == 0
    stamp = (tmp_path / "p001_sketch.jpg").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["apply", "photos", "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert sorted(_written(captured.out)) == ["p000_sketch.jpg", "p002_sketch.jpg"]
    assert "1 outputs exist already" in captured.err
    assert (tmp_path / "p001_sketch.jpg").stat().st_mtime_ns == stamp


def test_uri_inputs_are_listed_like_paths(tmp_path):
    photos = _photos(tmp_path / "photos", 3)
    (tmp_path / "photos" / "notes.txt").write_text("not a photo")
    uri = (tmp_path / "photos").as_uri()
    sources, failures = distributed.expand_sources([uri, f"{uri}/p00[12].jpg", f"{uri}/none*.jpg", f"{uri}/missing"])
    assert sources == [f"{uri}/{p.name}" for p in photos]
    assert [str(f.error) for f in failures] == [f"{uri}/none*.jpg: no file matches", f"{uri}/missing: no such file or directory"]
    picture = distributed.read_uri(sources[0], None)
    assert np.array_equal(picture.bgr, cv2.imread(str(photos[0])))
    with pytest.raises(ImageError, match=re.escape(f"{uri}/gone.jpg: cannot read")):
        distributed.read_uri(f"{uri}/gone.jpg", None)


DATASET_SCRIPT = """
import sys
import numpy as np
import ray
from cvstyle import Stylizer
from cvstyle.distributed import stylize_dataset
from cvstyle.engines.streams import throughput_streams

model, address = sys.argv[1:]
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(40, 56, 3), (40, 56, 3), (33, 47, 4)]]
ray.init(address=address)
dataset = ray.data.from_items([{"image": image, "n": n} for n, image in enumerate(images)])
rows = sorted(stylize_dataset(dataset, model, size=48).take_all(), key=lambda row: row["n"])
stylizer = Stylizer(model, streams=throughput_streams())  # as the actors load it
for image, row in zip(images, rows):
    bgr = image[:, :, [2, 1, 0, 3][: image.shape[2]]]
    expected = stylizer.stylize(bgr, size=48)[:, :, [2, 1, 0, 3][: image.shape[2]]]
    assert np.array_equal(np.asarray(row["image"]), expected), row["n"]
print("same")
"""


def test_stylize_dataset_maps_a_ray_dataset_as_stylizer_would(cluster, tmp_path, instance_norm_model):
    address, _ = cluster
    result = subprocess.run(
        [sys.executable, "-c", DATASET_SCRIPT, str(instance_norm_model), address],
        cwd=tmp_path, env={**os.environ, **RAY_ENV}, capture_output=True, text=True, timeout=STARTUP_S,
    )
    assert result.returncode == 0 and result.stdout.split() == ["same"], result.stderr[-3000:]
