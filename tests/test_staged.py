"""Exact tiled runs (issue 14): each stage once over all tiles, activations spilled to
files beyond the memory budget, cleaned up whatever happens."""

from __future__ import annotations

import gc
import threading
import weakref

import cv2
import numpy as np
import pytest

from cvstyle import presets, surgery, tiling
from cvstyle.cli import main
from cvstyle.engines import clear_network_cache, load_runner, ranking
from cvstyle.errors import CvstyleError
from cvstyle.memory import parse_size
from cvstyle.model import open_model
from cvstyle.stylizer import Stylizer
from cvstyle.tiling import TileSettings, activations, staged

SMALL_TILES = TileSettings(max_tile=96)


@pytest.fixture(scope="module")
def photo(cat_bgr) -> np.ndarray:
    return cv2.resize(cat_bgr, (301, 203), interpolation=cv2.INTER_AREA)  # odd sizes


@pytest.fixture
def spill_folder(tmp_path, monkeypatch):
    folder = tmp_path / "spill"
    folder.mkdir()
    monkeypatch.setenv(activations.TEMP_VARIABLE, str(folder))
    return folder


def test_stages_cut_the_graph_at_each_normalisation(instance_norm_model):
    graph = surgery.without_leading_pad(open_model(instance_norm_model).graph)
    stages = surgery.split_stages(graph)
    norms = surgery.normalisation_inputs(graph)
    assert len(stages) == len(norms) + 1
    assert [norm.source for stage in stages for norm in stage.normalisations] == norms
    # Residual blocks keep their shaved input for the addition two stages on.
    kept = {name for stage in stages for name in stage.outputs}
    assert any(node.op_type == "Slice" and node.output[0] in kept for node in graph.graph.node)


def test_full_resolution_maps_are_recomputed_not_stored(instance_norm_model, photo):
    """The first convolution's and the last transposed convolution's outputs (the maps
    at full resolution) are recomputed by the stage after them from their smaller inputs:
    the store never holds them, and the result is still the untiled one."""
    runner = load_runner(instance_norm_model, "onnxruntime", "cpu")
    network = staged.staged_network(open_model(instance_norm_model), runner)
    assert network.recomputed == {0, len(network.stages) - 2}
    full = {name for name, where in network.geometry.items() if where.scale == 1 and name in network.channels}
    assert full == {name for index in network.recomputed for name in network.stages[index].outputs}
    stored = []
    real_allocate = activations.ActivationStore.allocate

    def allocate(self, name):
        stored.append(name)
        return real_allocate(self, name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(activations.ActivationStore, "allocate", allocate)
        tiled = tiling.stylize_large(runner, open_model(instance_norm_model), photo, SMALL_TILES, max_memory=parse_size("2G"))
    assert stored and not full & set(stored)
    assert np.abs(tiled.astype(int) - runner(photo).astype(int)).max() <= 1


def test_clearing_the_network_cache_forgets_staged_networks(instance_norm_model):
    runner = load_runner(instance_norm_model, "onnxruntime", "cpu")
    first = staged.staged_network(open_model(instance_norm_model), runner)
    assert staged.staged_network(open_model(instance_norm_model), runner) is first
    assert staged._staged_network.cache_info().currsize
    clear_network_cache()  # the stage networks' memory goes with the cache
    assert staged._staged_network.cache_info().currsize == 0


def test_the_next_photo_runs_on_the_stages_the_first_one_built(instance_norm_model, photo, monkeypatch):
    """A staged network has more stage networks than the engines' cache of runners
    keeps. Under auto, with the stages on another engine than the photo's forward, the
    next photo must find the stages (and their engine's runner) the first one built,
    not build them all again."""
    monkeypatch.setattr(ranking, "staged_ranked", lambda run, wanted: ["opencv", "onnxruntime"])
    model = open_model(instance_norm_model)
    runner = load_runner(model, "onnxruntime", "cpu")
    used = []
    real = tiling.stylize_staged

    def stylize_staged(stage_runner, stage_model, *args):
        painted = real(stage_runner, stage_model, *args)
        used.append(staged.staged_network(stage_model, stage_runner))
        return painted

    monkeypatch.setattr(tiling, "stylize_staged", stylize_staged)
    paint = [tiling.stylize_large(runner, model, photo, SMALL_TILES, max_memory=parse_size("64M"), auto_engine=True)
             for _ in range(2)]
    assert len(used) == 2 and used[0] is used[1]
    assert used[0].runners[0].engine == "opencv"
    assert np.array_equal(paint[0], paint[1])


@pytest.mark.parametrize("engine", ["opencv", "onnxruntime"])
def test_spilled_run_equals_one_pass_and_leaves_no_files(engine, instance_norm_model, photo, spill_folder):
    runner = load_runner(instance_norm_model, engine, "cpu")
    whole = runner(photo).astype(int)
    calls = []
    spilled = tiling.stylize_large(
        runner, open_model(instance_norm_model), photo, SMALL_TILES, max_memory=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert np.abs(spilled.astype(int) - whole).max() <= 1
    assert calls[-1][0] == calls[-1][1] and len(calls) == calls[-1][1]
    assert not list(spill_folder.iterdir())


def test_each_stage_hands_back_its_working_memory_when_no_forward_runs(instance_norm_model, photo, monkeypatch):
    """OpenVINO's stage networks keep their working memory between forwards; each hands
    it back when its stage ends, never while one of its forwards (two streams) runs."""
    ov_engine = pytest.importorskip("cvstyle.engines.openvino")
    pytest.importorskip("openvino")
    running, released, misplaced = weakref.WeakKeyDictionary(), weakref.WeakKeyDictionary(), []
    lock = threading.Lock()
    real_run, real_release = ov_engine.OpenVinoNetwork.run, ov_engine.OpenVinoNetwork.release_memory

    def run(network, *args, **kwargs):
        with lock:
            running[network] = running.get(network, 0) + 1
            released[network] = False
        try:
            return real_run(network, *args, **kwargs)
        finally:
            with lock:
                running[network] -= 1

    def release_memory(network):
        with lock:
            if running.get(network):
                misplaced.append(network.name)
            released[network] = True
        real_release(network)

    monkeypatch.setattr(ov_engine.OpenVinoNetwork, "run", run)
    monkeypatch.setattr(ov_engine.OpenVinoNetwork, "release_memory", release_memory)
    runner = load_runner(instance_norm_model, "openvino", "cpu")
    tiling.stylize_large(runner, open_model(instance_norm_model), photo, SMALL_TILES, statistics="exact")
    gc.collect()  # the networks that outlive the run (the cutting's probe does not)
    assert len(released) > 2  # stages ran, not the one network
    assert not misplaced and all(released.values())


@pytest.mark.parametrize("kernel", [3, 7])
def test_windows_hold_the_context_each_stage_s_kernels_need(kernel, photo, spill_folder):
    """Each stage reads as much context as its convolutions reach, at its resolution:
    7x7 residual convolutions at a quarter of the resolution need 12 pixels a side."""
    onnx_graphs = pytest.importorskip("onnx_graphs")
    path = onnx_graphs.transformer_net(spill_folder.parent / "net.onnx", seed=3, residuals=2, residual_kernel=kernel)
    model = open_model(path, presets.preset("rgb255"))
    runner = load_runner(model, "onnxruntime", "cpu")
    network = staged.staged_network(model, runner)
    residual = network.stages[4]  # a residual block's first convolution, at a quarter
    assert network.margin(residual) == 4 * (kernel // 2)
    whole = runner(photo).astype(int)
    tiled = tiling.stylize_large(runner, model, photo, TileSettings(max_tile=64), max_memory=1)
    assert np.abs(tiled.astype(int) - whole).max() <= 1


class Interrupted(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("failure", [RuntimeError("engine broke"), Interrupted()])
def test_files_are_removed_after_an_error_or_an_interrupt(failure, instance_norm_model, photo, spill_folder, monkeypatch):
    runner = load_runner(instance_norm_model, "onnxruntime", "cpu")
    real_stage = staged._Run.stage
    seen = []

    def failing_stage(self, index, progress):
        if index == 3:
            seen.extend(spill_folder.rglob("*.f32"))
            raise failure
        return real_stage(self, index, progress)

    monkeypatch.setattr(staged._Run, "stage", failing_stage)
    with pytest.raises(type(failure)):
        tiling.stylize_large(runner, open_model(instance_norm_model), photo, SMALL_TILES, max_memory=1)
    assert seen  # the run had spilled before it failed
    assert not list(spill_folder.iterdir())


def test_maps_alive_at_once_get_their_own_memory_and_the_others_share_it(tmp_path):
    """The store's RAM is one block as large as the most bytes alive at once (each page
    faulted in once per run), not the sum of the maps."""
    lifetime = activations.Lifetime
    maps = [lifetime("a", (4, 100, 100), 0, 1), lifetime("b", (4, 100, 100), 1, 2),
            lifetime("c", (8, 100, 100), 2, 3), lifetime("d", (2, 100, 100), 3, 3)]
    layout = activations.Layout.plan(maps)
    size = 4 * 100 * 100 * 4
    assert layout.disk == 0 and layout.ram == 3 * size  # b and c at stage 2
    with activations.ActivationStore(layout, folder=tmp_path) as store:
        for kept in maps:
            store.allocate(kept.name)
            store.arrays[kept.name][:] = len(store.arrays)
        arrays = store.arrays
        assert {name: array.shape for name, array in arrays.items()} == {kept.name: kept.shape for kept in maps}
        overlapping = {(x.name, y.name) for x in maps for y in maps
                       if x.name < y.name and np.shares_memory(arrays[x.name], arrays[y.name])}
        assert not overlapping & {("a", "b"), ("b", "c"), ("c", "d")}  # alive together
        assert overlapping  # the rest share
        assert not list(tmp_path.iterdir())


def test_a_freed_maps_bytes_that_no_later_map_takes_are_handed_back():
    """When the large map is freed, the bytes the small later map reuses stay with the
    run; the rest can go back to the system (the last stages' windows then fit beside
    the maps they read)."""
    lifetime = activations.Lifetime
    layout = activations.Layout.plan([lifetime("large", (8, 100, 100), 0, 1), lifetime("small", (2, 100, 100), 2, 3),
                                      lifetime("early", (1, 10, 10), 0, 0)])
    large, small = (layout.offsets[name] for name in ("large", "small"))
    assert large <= small and small + layout.maps["small"].size <= large + layout.maps["large"].size
    unused = layout.unused_after("large")
    kept = (small, small + layout.maps["small"].size)
    assert sum(stop - start for start, stop in unused) == layout.maps["large"].size - layout.maps["small"].size
    assert all(stop <= kept[0] or start >= kept[1] for start, stop in unused)
    assert layout.unused_after("small") == [kept]  # nothing comes after it


@pytest.mark.parametrize("seed", range(20))
def test_layouts_of_random_lifetimes_never_share_bytes_between_maps_alive_together(seed):
    rng = np.random.default_rng(seed)
    maps = []
    for index in range(int(rng.integers(1, 15))):
        first = int(rng.integers(0, 10))
        shape = tuple(int(side) for side in rng.integers(1, 40, 3))
        maps.append(activations.Lifetime(f"m{index}", shape, first, first + int(rng.integers(0, 4))))
    peak = max(sum(kept.size for kept in maps if kept.first <= stage <= kept.last) for stage in range(14))
    budget = int(rng.integers(1, 2 * peak)) if seed % 2 else None
    layout = activations.Layout.plan(maps, budget)
    in_ram = [kept for kept in maps if kept.name in layout.offsets]
    assert layout.disk == sum(kept.size for kept in maps if kept.name not in layout.offsets)
    assert budget is None or layout.ram <= budget
    if budget is None:
        assert not layout.disk and layout.ram >= peak
    span = {kept.name: (layout.offsets[kept.name], layout.offsets[kept.name] + kept.size) for kept in in_ram}
    for a in in_ram:
        assert span[a.name][0] % activations.ALIGNMENT == 0 and span[a.name][1] <= layout.ram
        for b in in_ram:
            together = a.name != b.name and a.first <= b.last and b.first <= a.last
            assert not (together and span[a.name][0] < span[b.name][1] and span[b.name][0] < span[a.name][1])
        # The bytes handed back when a is freed: exactly those of a no later map takes.
        taken = np.zeros(a.size, bool)
        for start, stop in (span[b.name] for b in in_ram if b.first > a.last):
            taken[max(0, start - span[a.name][0]): max(0, stop - span[a.name][0])] = True
        unused = np.zeros(a.size, bool)
        for start, stop in layout.unused_after(a.name):
            assert span[a.name][0] <= start < stop <= span[a.name][1]
            unused[start - span[a.name][0]: stop - span[a.name][0]] = True
        assert (unused == ~taken).all()


def test_maps_beyond_the_ram_budget_go_to_files_the_largest_stay_in_ram(tmp_path):
    size = 4 * 100 * 100 * 4
    maps = [activations.Lifetime("a", (4, 100, 100), 0, 2), activations.Lifetime("b", (8, 100, 100), 1, 2),
            activations.Lifetime("c", (4, 100, 100), 2, 2)]
    layout = activations.Layout.plan(maps, ram_budget=3 * size)
    assert set(layout.offsets) == {"b", "a"} and layout.disk == size and layout.ram == 3 * size
    with activations.ActivationStore(layout, folder=tmp_path) as store:
        for kept in maps:
            store.allocate(kept.name)
        assert set(store.arrays) == {"a", "b"} and set(store.files) == {"c"}
        store.write("c", slice(0, 100), slice(0, 100), np.full((4, 100, 100), 3, np.float32))
        assert (store.read("c", slice(5, 7), slice(0, 100)) == 3).all()
        folder = store.folder
        assert list(folder.iterdir())
    assert not folder.exists()


def test_the_plan_keeps_maps_in_ram_where_a_large_tile_fits_beside_them(instance_norm_model, monkeypatch):
    """Writing maps to files is slower than smaller tiles down to MIN_UNSPILLED_CORE: a
    budget that holds all the maps and such a tile spills nothing; a tighter one spills
    and gives the tile half of what is free."""
    runner = load_runner(instance_norm_model, "onnxruntime", "cpu")
    model = open_model(instance_norm_model)
    monkeypatch.setattr(tiling, "resident_memory", lambda: 0)
    bgr = np.zeros((3000, 4000, 3), np.uint8)
    network = staged.staged_network(model, runner)
    monkeypatch.setattr(network, "held", 0)  # nor memory kept from earlier photos
    inner = tiling.PaddedImage(bgr, network.border).inner
    maps = staged.map_layout(network, *inner).ram

    def plan(budget: int) -> tuple[int, int]:
        core, ram = tiling._staged_plan(runner, model, bgr, 2048, budget)
        window = network.window_bytes(core, runner.engine)
        assert ram + window + 2 * bgr.nbytes <= budget
        return core, staged.map_layout(network, *inner, ram).disk

    roomy = 2 * bgr.nbytes + maps + network.window_bytes(640, "onnxruntime")
    core, disk = plan(int(roomy))
    assert disk == 0 and core >= tiling.MIN_UNSPILLED_CORE
    core, disk = plan(int(roomy) - maps // 2)
    assert disk > 0 and core >= tiling.MIN_UNSPILLED_CORE


@pytest.mark.parametrize("choice", ["auto", "openvino"])
def test_auto_runs_stages_on_the_engine_fastest_at_staged_runs(choice, instance_norm_model, photo, monkeypatch, caplog):
    """Under auto, a photo's forward and its staged run each go to the engine measured
    fastest at them (here OpenVINO and ONNX Runtime); an engine asked for by name runs both."""
    pytest.importorskip("openvino")
    monkeypatch.setattr(ranking, "ranked", lambda build, wanted: ["openvino", "onnxruntime", "opencv"])
    monkeypatch.setattr(ranking, "staged_ranked", lambda run, wanted: ["onnxruntime", "openvino"])
    staged_on = []
    real = tiling.stylize_staged
    monkeypatch.setattr(tiling, "stylize_staged", lambda runner, *args: (staged_on.append(runner.engine), real(runner, *args))[1])
    stylizer = Stylizer(str(instance_norm_model), device="cpu", engine=choice)
    assert stylizer.engine == "openvino"
    with caplog.at_level("INFO", logger="cvstyle"):
        painted = stylizer.stylize(photo, tile="on", tile_settings=SMALL_TILES, max_memory="64M")
    assert staged_on == (["onnxruntime"] if choice == "auto" else ["openvino"])
    assert ("staged run goes to onnxruntime" in caplog.text) == (choice == "auto")
    whole = load_runner(instance_norm_model, "onnxruntime", "cpu")(photo)
    assert np.abs(painted.astype(int) - whole).max() <= 1


def test_not_enough_disk_is_one_line_and_no_output(workdir, instance_norm_model, photo, spill_folder, monkeypatch, capsys):
    cv2.imwrite(str(workdir / "cat.png"), photo)
    monkeypatch.setattr(activations.shutil, "disk_usage", lambda path: type("U", (), {"free": 1024})())
    code = main(["apply", "-m", str(instance_norm_model), "cat.png", "--tile", "on",
                 "--tile-size", "96", "--max-memory", "1", "-o", "out.png"])
    err = capsys.readouterr().err.strip()
    assert code == CvstyleError.exit_code and len(err.splitlines()) == 1
    assert "temporary disk space" in err and str(spill_folder) in err
    assert not (workdir / "out.png").exists()


def test_memory_the_system_refuses_is_one_line_and_no_output(workdir, instance_norm_model, photo, spill_folder,
                                                             monkeypatch, capsys):
    """The maps' block is reserved at once; where the system refuses it (an address-space
    limit, strict overcommit), the run stops in one line, before any file is made."""
    cv2.imwrite(str(workdir / "cat.png"), photo)

    def refused(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(activations.mmap, "mmap", refused)
    code = main(["apply", "-m", str(instance_norm_model), "cat.png", "--tile", "on",
                 "--tile-size", "96", "--max-memory", "2G", "-o", "out.png"])
    err = capsys.readouterr().err.strip()
    assert code == CvstyleError.exit_code and len(err.splitlines()) == 1
    assert "memory for this photo's activation maps" in err and "Cannot allocate memory" in err
    assert not (workdir / "out.png").exists() and not list(spill_folder.iterdir())


def test_the_budget_decides_between_one_pass_and_stages(instance_norm_model, photo, monkeypatch):
    runner = load_runner(instance_norm_model, "onnxruntime", "cpu")
    model = open_model(instance_norm_model)
    assert tiling.fits_one_pass(runner, model, photo, 10**10)
    assert not tiling.fits_one_pass(runner, model, photo, 10**6)
    assert not tiling.fits_one_pass(load_runner(instance_norm_model, "opencv", "cpu"), model, photo, 10**10)


def test_deciding_on_one_pass_builds_no_stage_networks(instance_norm_model, photo, monkeypatch):
    """Whether a photo fits one pass depends on the sizes of the maps alone: a photo
    that then runs in one pass (or on another engine's stages, under auto) must not pay
    for building every stage's network."""
    clear_network_cache()
    built = []
    real_build = staged.build_network
    monkeypatch.setattr(staged, "build_network", lambda graph, *args, **kwargs: (built.append(graph), real_build(graph, *args, **kwargs))[1])
    runner = load_runner(instance_norm_model, "onnxruntime", "cpu")
    model = open_model(instance_norm_model)
    assert tiling.fits_one_pass(runner, model, photo, 10**10) and not tiling.fits_one_pass(runner, model, photo, 10**6)
    assert len(built) == 1  # the probe that measures the maps
    network = staged.staged_network(model, runner)
    assert len(network.runners) == len(network.stages) and len(built) == 1 + len(network.stages)


def test_the_plan_counts_the_memory_of_the_stage_networks(instance_norm_model, monkeypatch):
    """The stage networks, built at the first staged run, take memory: the plan reads
    what the process holds after building them, so that maps and windows fit beside."""
    clear_network_cache()
    runner = load_runner(instance_norm_model, "onnxruntime", "cpu")
    model = open_model(instance_norm_model)
    held = [0]
    real_stage_runner = staged._stage_runner

    def stage_runner(*args, **kwargs):
        held[0] += 50 * 2**20  # each network "takes" 50 MiB
        return real_stage_runner(*args, **kwargs)

    monkeypatch.setattr(staged, "_stage_runner", stage_runner)
    monkeypatch.setattr(tiling, "resident_memory", lambda: held[0])
    bgr = np.zeros((3000, 4000, 3), np.uint8)
    budget = 4 * 2**30
    core, ram = tiling._staged_plan(runner, model, bgr, 2048, budget)
    network = staged.staged_network(model, runner)
    assert held[0] == 50 * 2**20 * (1 + len(network.stages))  # the probe and every stage
    assert held[0] + 2 * bgr.nbytes + network.window_bytes(core, runner.engine) + ram <= budget


def test_memory_sizes():
    assert parse_size("1.5G") == int(1.5 * 1024**3) and parse_size("800M") == 800 * 1024**2
    assert parse_size("2GiB") == 2 * 1024**3 and parse_size(12345) == 12345
    for bad in ("lots", "-1G", "0", "1.5X"):
        with pytest.raises(CvstyleError, match="memory size"):
            parse_size(bad)
