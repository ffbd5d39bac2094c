"""The model store, resolve_model, and the `cvstyle models` commands."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import platformdirs
import pytest
from httpserver import model_bytes, sha256_digest, write_manifest

import cvstyle
from cvstyle import hashes, store
from cvstyle.catalogue import load_catalogue
from cvstyle.cli import main
from cvstyle.errors import ModelError

MODEL, OTHER = model_bytes(7), model_bytes(8)  # two valid checkpoints of the same size

URL = "http://127.0.0.1:9/unused.t7"


@pytest.fixture
def manifest(tmp_path) -> Path:
    """test/good and test/bad both expect the fixture's bytes; test/absent is never stored."""
    digest = sha256_digest(MODEL)
    return write_manifest(
        tmp_path / "manifest.txt",
        f"test/good {URL} {digest} Good model",
        f"test/bad {URL} {digest} Bad model",
        f"test/absent {URL} {digest} Absent model",
    )


@pytest.fixture
def stocked(home, manifest) -> dict[str, Path]:
    """The store with test/good intact and test/bad holding the wrong bytes."""
    paths = {}
    for name, data in [("good", MODEL), ("bad", OTHER)]:
        path = home / "models" / "test" / f"{name}.t7"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths[name] = path
    return paths


def entry(manifest: Path, name: str):
    return load_catalogue(manifest).lookup(name)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_home_is_the_environment_override_or_the_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CVSTYLE_HOME", str(tmp_path / "h"))
    assert store.home() == tmp_path / "h"
    assert store.model_path(load_catalogue().lookup("candy")) == tmp_path / "h" / "models" / "instance_norm" / "candy.t7"
    monkeypatch.delenv("CVSTYLE_HOME")
    assert store.home() == Path(platformdirs.user_data_dir("cvstyle", appauthor=False))
    assert store.home().name == "cvstyle"


def test_status_missing_ok_corrupt(stocked, manifest):
    assert store.status(entry(manifest, "absent")).status is store.Status.MISSING
    good = store.status(entry(manifest, "good"))
    assert (good.status, good.size, good.path) == (store.Status.OK, len(MODEL), stocked["good"])
    bad = store.status(entry(manifest, "bad"))
    assert bad.status is store.Status.CORRUPT
    assert bad.detail == f"expected {sha256_digest(MODEL)}, got {sha256_digest(OTHER)}"


def test_status_is_cached_until_the_file_changes(stocked, manifest, monkeypatch):
    good = entry(manifest, "good")
    assert store.status(good).status is store.Status.OK

    def no_hashing(*args):
        raise AssertionError("hashed again")

    with monkeypatch.context() as patched:
        patched.setattr(hashes, "file_hexdigest", no_hashing)
        assert store.status(good).status is store.Status.OK  # from the cache
        with pytest.raises(AssertionError, match="hashed again"):
            store.verify(good)  # verify always re-hashes

    stocked["good"].write_bytes(MODEL[:-1] + b"!")  # same size, new mtime
    os.utime(stocked["good"], ns=(0, 1))
    assert store.status(good).status is store.Status.CORRUPT


def test_resolve_model_paths_and_builtin(tmp_path, home):
    model = tmp_path / "my model.t7"
    model.write_bytes(b"anything")
    assert store.resolve_model(str(model)) == model
    sketch = Path(cvstyle.__file__).parent / "data" / "sketch.t7"
    assert store.resolve_model("sketch") == store.resolve_model("builtin/sketch") == sketch
    with pytest.raises(ModelError, match=f"model file {tmp_path / 'nope.t7'} does not exist"):
        store.resolve_model(str(tmp_path / "nope.t7"))
    with pytest.raises(ModelError, match="is a directory, not a model file"):
        store.resolve_model(str(tmp_path))


def test_resolve_model_names_the_fetch_command(home, stocked, manifest):
    with pytest.raises(ModelError) as raised:
        store.resolve_model("candy")
    assert str(raised.value) == "model instance_norm/candy is not downloaded: run `cvstyle fetch-models instance_norm/candy`"
    with pytest.raises(ModelError) as raised:
        store.resolve_model("absent", manifest)
    assert str(raised.value) == (
        f"model test/absent is not downloaded: run `cvstyle fetch-models --manifest {manifest} test/absent`"
    )
    with pytest.raises(ModelError, match=r"model test/bad at .*bad.t7 is corrupt \(expected sha256:"):
        store.resolve_model("test/bad", manifest)
    assert store.resolve_model("good", manifest) == stocked["good"]


def test_remove_deletes_the_file_and_any_part(stocked, manifest):
    good = entry(manifest, "good")
    part = stocked["good"].with_name("good.t7.part")
    part.write_bytes(b"half")
    assert store.remove(good) is True
    assert not stocked["good"].exists() and not part.exists()
    assert store.remove(good) is False
    assert store.status(good).status is store.Status.MISSING


def test_remove_deletes_the_onnx_conversion_and_the_lock(stocked, manifest, home, tmp_path, monkeypatch, capsys):
    """Running a .t7 on ONNX Runtime leaves <name>.<hash>.onnx beside it; fetching, a .lock."""
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("cat.png", np.full((24, 32, 3), 128, np.uint8))
    folder = stocked["good"].parent
    other = folder / "good2.t7"  # another model whose name starts alike: untouched
    other.write_bytes(MODEL)
    (folder / "good2.0123456789abcdef.onnx").write_bytes(b"x")
    assert main(["apply", "-m", "good", "--manifest", str(manifest), "--engine", "onnxruntime", "cat.png"]) == 0
    assert [p.name for p in folder.glob("good.*.onnx")]  # the conversion is there
    with store.lock(entry(manifest, "good")):  # as a download leaves it
        pass
    assert (folder / "good.t7.lock").exists()
    capsys.readouterr()

    code, out, _ = run(capsys, "models", "remove", "--manifest", str(manifest), "good")

    assert (code, out) == (0, "test/good: removed\n")
    assert sorted(p.name for p in folder.iterdir()) == ["bad.t7", "good2.0123456789abcdef.onnx", "good2.t7"]


def test_models_lists_every_model(stocked, manifest, home, capsys):
    code, out, _ = run(capsys, "models", "--manifest", str(manifest))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "FAMILY", "SIZE", "STATUS", "TITLE"]
    sketch_size = (Path(cvstyle.__file__).parent / "data" / "sketch.t7").stat().st_size
    assert lines[1].split()[:6] == ["sketch", "builtin", f"{sketch_size / 1024:.1f}", "KiB", "built-in", "Pencil"]
    assert lines[2].split()[:5] == ["composition_vii", "eccv16", "-", "missing", "Composition"]
    rows = {line.split()[0]: line.split() for line in lines[2:15] if line}
    assert rows["good"][:6] == ["good", "test", "3.3", "MiB", "ok", "Good"]
    assert rows["bad"][4] == "corrupt"
    assert rows["absent"][3] == "missing"
    # The store's total: both model files and the verification cache.
    total = sum(path.stat().st_size for path in (home / "models").rglob("*") if path.is_file())
    assert total > 2 * len(MODEL)
    assert f"1 of 13 downloaded; the store takes {total / 1024**2:.1f} MiB in {home / 'models'} (set CVSTYLE_HOME to move it)" in out


def test_models_verify(stocked, manifest, capsys):
    code, out, err = run(capsys, "models", "verify", "--manifest", str(manifest), "good")
    assert (code, out) == (0, "test/good: ok\n")

    code, out, err = run(capsys, "models", "--manifest", str(manifest), "verify")  # group-level --manifest
    assert code == 3
    assert "test/good: ok" in out and "test/bad: corrupt (expected sha256:" in out
    assert "test/absent: missing" in out
    assert err == f"cvstyle: error: 1 of 13 models did not verify: run `cvstyle fetch-models --manifest {manifest} test/bad`\n"

    code, out, err = run(capsys, "models", "verify", "--manifest", str(manifest), "absent")
    assert code == 3 and "test/absent: missing" in out


def test_models_remove(stocked, manifest, capsys):
    code, out, _ = run(capsys, "models", "remove", "--manifest", str(manifest), "good", "absent")
    assert code == 0
    assert out == "test/good: removed\ntest/absent: not downloaded, nothing to remove\n"
    assert not stocked["good"].exists() and stocked["bad"].exists()


def test_models_path(stocked, manifest, capsys):
    assert run(capsys, "models", "path", "--manifest", str(manifest), "good") == (0, f"{stocked['good']}\n", "")
    code, _, err = run(capsys, "models", "path", "la_muse")
    assert code == 3 and "is ambiguous: use one of eccv16/la_muse, instance_norm/la_muse" in err


def test_models_info(stocked, manifest, capsys):
    code, out, _ = run(capsys, "models", "info", "--manifest", str(manifest), "good")
    assert code == 0
    assert f"file:          {stocked['good']}" in out and "family:        instance_norm" in out
    code, _, err = run(capsys, "models", "info", "udnie")
    assert code == 3 and "run `cvstyle fetch-models instance_norm/udnie`" in err


def test_models_add_keeps_a_manifest_until_forgotten(home, tmp_path, monkeypatch, capsys):
    """`models add` once, then the models are known to every command without --manifest."""
    source = tmp_path / "source.t7"
    source.write_bytes(MODEL)
    mine = write_manifest(
        tmp_path / "my-models.txt", f"mine/inst {source.as_uri()} {sha256_digest(MODEL)} My style"
    )
    code, out, _ = run(capsys, "models", "add", str(mine))
    assert code == 0 and "added 1 model from" in out and "cvstyle fetch-models mine/inst" in out
    mine.unlink()  # a copy is kept in the store

    code, out, _ = run(capsys, "models")
    assert "inst             mine" in out and "My style" in out
    assert f"added manifest my-models ({home / 'manifests' / 'my-models.txt'})" in out
    code, out, err = run(capsys, "fetch-models", "inst")
    assert code == 0, err
    assert store.resolve_model("mine/inst") == home / "models" / "mine" / "inst.t7"
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("cat.png", np.full((24, 32, 3), 128, np.uint8))
    assert main(["apply", "-m", "mine/inst", "cat.png"]) == 0
    assert (tmp_path / "cat_inst.jpg").is_file()
    capsys.readouterr()

    code, out, _ = run(capsys, "models", "forget", "my-models")
    assert (code, out) == (0, f"forgot manifest my-models ({home / 'manifests' / 'my-models.txt'} removed)\n")
    code, _, err = run(capsys, "models", "path", "mine/inst")
    assert code == 3 and "unknown model 'mine/inst'" in err
    code, _, err = run(capsys, "models", "forget", "my-models")
    assert code == 3 and "no manifest named 'my-models' was added" in err


def test_models_add_refuses_a_bad_manifest(home, tmp_path, capsys):
    bad = write_manifest(tmp_path / "bad.txt", f"mine/x {URL} sha1:1234 Broken")
    code, _, err = run(capsys, "models", "add", str(bad))
    assert code == 3
    assert err == f"cvstyle: error: {bad}:2: a sha1 digest is 40 hex digits, not '1234'\n"
    assert not (home / "manifests").exists()
    code, _, err = run(capsys, "models", "add", str(tmp_path / "absent.txt"))
    assert code == 3 and "does not exist" in err
