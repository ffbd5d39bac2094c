#!/usr/bin/env python3
"""Structural fuzzer for model files: every case must end in a clean refusal or a run.

Mutates both fixture families (``cvstyle.testing``) as Torch7 trees (field values,
tensors, shared subtrees, cycles, module counts and nesting, class names, then a few
raw bytes now and then) and their ONNX conversions as graphs (dimensions, stored data,
attributes, shape constants, node order and cycles, duplicated nodes, opsets, input and
output shapes, subgraphs, raw bytes), writes each case to a temporary folder and runs
``cvstyle apply -m CASE photo.png`` on it in a child process under a memory limit
(RLIMIT_AS) and a time limit, alternating the OpenCV and ONNX Runtime engines.

Each outcome is counted: ``refused`` (exit 1-4, one line ``cvstyle: error: ...``),
``ran`` (exit 0), ``noisy`` (a refusal with other lines around it), ``traceback``,
``signal`` (the interpreter died), ``hang`` (past the time limit) and ``memory`` (an
allocation failed under the limit). Only the first two are acceptable.

    .venv/bin/python scripts/fuzz_models.py --cases 1000          # per format
    .venv/bin/python scripts/fuzz_models.py --cases 30 --json out.json --keep bad/

Nothing is written outside the temporary folder unless --json or --keep is given.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cvstyle import onnx_export, torch7, torch7_modules  # noqa: E402
from cvstyle.testing import FAMILIES, build_checkpoint  # noqa: E402
from cvstyle.torch7 import TorchObject  # noqa: E402

OUTCOMES = ("refused", "ran", "noisy", "traceback", "signal", "hang", "memory")
ACCEPTABLE = frozenset({"refused", "ran"})
HOSTILE_NUMBERS = [0, -1, 1, 2, 3, 7, 255, 100_000, 2**31 - 1, -(2**31), 2**53, 1e300, -0.5, 3.5,
                   float("nan"), float("inf")]
HOSTILE_VALUES = HOSTILE_NUMBERS + ["9", True, None, {}, [1, 2]]
MEMORY_SIGNS = ("MemoryError", "bad_alloc", "Failed to allocate", "Insufficient memory", "OutOfMemory")


# ---------------------------------------------------------------- Torch7 mutations


def _modules(root: TorchObject) -> list[TorchObject]:
    """Each module under ``root`` once, even after earlier mutations shared or looped them."""
    found, seen, stack = [], set(), [root]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        found.append(module)
        stack.extend(c for c in module.children if isinstance(c, TorchObject))
    return found


def _t7_field(rng: random.Random, root: TorchObject) -> None:
    module = rng.choice(_modules(root))
    keys = [k for k, v in module.fields.items() if isinstance(v, (int, float)) and k != "modules"]
    key = rng.choice(keys) if keys else rng.choice(["kW", "padW", "nOutputPlane", "size"])
    module.fields[key] = rng.choice(HOSTILE_VALUES)


def _t7_tensor(rng: random.Random, root: TorchObject) -> None:
    holders = [m for m in _modules(root) if any(isinstance(v, np.ndarray) and v.size for v in m.fields.values())]
    module = rng.choice(holders)
    key = rng.choice([k for k, v in module.fields.items() if isinstance(v, np.ndarray) and v.size])
    value = module.fields[key]
    module.fields[key] = rng.choice([
        value.ravel()[: max(1, value.size // 2)].copy(), np.zeros(0, np.float32),
        value.astype(np.int64), np.full_like(value, np.nan), np.concatenate([value.ravel(), value.ravel()]),
        None, "weights",
    ])


def _containers(root: TorchObject) -> list[TorchObject]:
    return [m for m in _modules(root) if m.class_name in ("nn.Sequential", "nn.ConcatTable")]


def _t7_shared(rng: random.Random, root: TorchObject) -> None:
    container = rng.choice(_containers(root))
    other = rng.choice(_modules(root)[1:])
    children = container.fields["modules"]
    children[rng.randrange(len(children))] = other


def _t7_cycle(rng: random.Random, root: TorchObject) -> None:
    ancestor = rng.choice(_containers(root))
    inner = rng.choice(_containers(ancestor))
    inner.fields["modules"].insert(rng.randrange(len(inner.fields["modules"]) + 1), ancestor)


def _t7_diamond(rng: random.Random, root: TorchObject) -> None:
    container = rng.choice(_containers(root))
    children = container.fields["modules"]
    index = rng.randrange(len(children))
    module = children[index]
    for _ in range(rng.randint(2, 40)):
        module = torch7_modules.sequential(torch7_modules.concat_table(module, module), torch7_modules.cadd_table())
    children[index] = module


def _t7_counts(rng: random.Random, root: TorchObject) -> None:
    container = rng.choice(_containers(root))
    children = container.fields["modules"]
    kind = rng.randrange(4)
    if kind == 0:
        children.extend(torch7_modules.relu() for _ in range(rng.choice([10, 1000, 12_000])))
    elif kind == 1:
        children.clear()
    elif kind == 2:
        module = root.fields["modules"].pop() if root.fields["modules"] else torch7_modules.relu()
        for _ in range(rng.choice([50, 70, 300])):
            module = torch7_modules.sequential(module)
        root.fields["modules"].append(module)
    else:
        del children[rng.randrange(len(children)) :]


def _t7_class(rng: random.Random, root: TorchObject) -> None:
    module = rng.choice(_modules(root))
    module.class_name = rng.choice([
        "nn.SpatialConvolution", "nn.SpatialFullConvolution", "nn.ConcatTable", "nn.CAddTable",
        "nn.ShaveImage", "nn.InstanceNormalization", "nn.SpatialBatchNormalization", "nn.Foo",
        "nn." + "X" * 3000,
    ])


def _t7_drop_field(rng: random.Random, root: TorchObject) -> None:
    module = rng.choice(_modules(root))
    if module.fields:
        del module.fields[rng.choice(list(module.fields))]


T7_MUTATIONS = [_t7_field, _t7_field, _t7_tensor, _t7_shared, _t7_cycle, _t7_diamond, _t7_counts, _t7_class, _t7_drop_field]


def _mutate(mutation, rng: random.Random, target) -> None:
    """Apply ``mutation`` unless an earlier one left it nothing to work on (an emptied
    container, a graph without nodes of the kind it needs)."""
    try:
        mutation(rng, target)
    except (ValueError, IndexError):
        pass


def _flip_bytes(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(raw) - 4)
        if rng.random() < 0.5:
            raw[position] = rng.randrange(256)
        else:  # an int32 count or size
            raw[position : position + 4] = rng.choice([-1, 0, 2**31 - 1, 100_000, 3]).to_bytes(4, "little", signed=True)
    return bytes(raw[: rng.randrange(len(raw) // 2, len(raw))] if rng.random() < 0.2 else raw)


def t7_case(rng: random.Random, bases: dict) -> bytes:
    checkpoint = copy.deepcopy(bases[rng.choice(FAMILIES)])
    for _ in range(rng.choice([1, 1, 2, 3])):
        _mutate(rng.choice(T7_MUTATIONS), rng, checkpoint["model"])
    buffer = io.BytesIO()
    torch7.dump(checkpoint, buffer)
    data = buffer.getvalue()
    return _flip_bytes(rng, data) if rng.random() < 0.1 else data


# ---------------------------------------------------------------- ONNX mutations


def _onnx_dims(rng, model) -> None:
    tensor = rng.choice(model.graph.initializer)
    dims = list(tensor.dims)
    choice = rng.randrange(3)
    if choice == 0 and dims:
        dims[rng.randrange(len(dims))] = rng.choice([-1, -3, 0, 2**31, 2**40, dims[0] + 1])
    elif choice == 1:
        dims.append(rng.choice([1, 2, -1]))
    else:
        dims = dims[:-1]
    tensor.dims[:] = dims


def _onnx_data(rng, model) -> None:
    tensor = rng.choice(model.graph.initializer)
    choice = rng.randrange(3)
    if choice == 0:
        tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]
    elif choice == 1:
        tensor.data_type = rng.choice([0, 2, 7, 8, 11, 99])
    else:
        tensor.raw_data = b""


def _onnx_attribute(rng, model) -> None:
    nodes = [n for n in model.graph.node if any(a.ints or a.type == 2 for a in n.attribute)]
    if not nodes:
        return
    attribute = rng.choice([a for a in rng.choice(nodes).attribute if a.ints or a.type == 2])
    value = rng.choice([-1, 0, 100_000, 2**31, -(2**40), 3])
    if attribute.ints:
        attribute.ints[rng.randrange(len(attribute.ints))] = value
    else:
        attribute.i = value


def _onnx_constant(rng, model) -> None:
    ints = [t for t in model.graph.initializer if t.data_type == 7]
    if ints:
        tensor = rng.choice(ints)
        values = np.frombuffer(tensor.raw_data, np.int64).copy()
        if values.size:
            values[rng.randrange(values.size)] = rng.choice([-100_000, 100_000, 2**40, -1])
            tensor.raw_data = values.tobytes()


def _onnx_structure(rng, model) -> None:
    nodes = model.graph.node
    i, j = sorted(rng.sample(range(len(nodes)), 2))
    choice = rng.randrange(5)
    if choice == 0:  # a cycle: an early node reads a later node's output
        nodes[i].input[0] = nodes[j].output[0]
    elif choice == 1:  # out of order
        first, second = type(nodes[i])(), type(nodes[j])()
        first.CopyFrom(nodes[i])
        second.CopyFrom(nodes[j])
        nodes[i].CopyFrom(second)
        nodes[j].CopyFrom(first)
    elif choice == 2:  # a node writing an existing tensor again
        nodes.add().CopyFrom(nodes[i])
    elif choice == 3:
        del nodes[i]
    else:  # many nodes
        last = nodes[-1]
        for k in range(rng.choice([100, 25_000])):
            nodes.add().CopyFrom(last)
            nodes[-1].output[0] = f"extra{k}"


def _onnx_shapes(rng, model) -> None:
    value = rng.choice([model.graph.input[0], model.graph.output[0]])
    dims = value.type.tensor_type.shape.dim
    choice = rng.randrange(3)
    if choice == 0:
        del dims[2:]  # rank 2
    elif choice == 1:
        dims[1].dim_value = rng.choice([1, -3, 0])
    else:
        dims[rng.randrange(len(dims))].dim_value = rng.choice([-1, -5, 2**40])


def _onnx_opset(rng, model) -> None:
    if rng.random() < 0.5:
        model.opset_import[0].version = rng.choice([0, 1, 5, 10**6])
    else:
        model.ir_version = rng.choice([0, 1, 100])


def _onnx_op_type(rng, model) -> None:
    node = rng.choice(model.graph.node)
    node.op_type = rng.choice(["Conv", "ConvTranspose", "Reshape", "Expand", "Tile", "If", "Loop", "Foo", "Resize"])
    if node.op_type == "If":
        # Copied before the attribute exists: protobuf crashes copying a message into itself.
        body = type(model.graph)()
        body.CopyFrom(model.graph)
        attribute = node.attribute.add()
        attribute.name, attribute.type = "then_branch", 5
        attribute.g.CopyFrom(body)


ONNX_MUTATIONS = [_onnx_dims, _onnx_dims, _onnx_data, _onnx_attribute, _onnx_constant,
                  _onnx_structure, _onnx_shapes, _onnx_opset, _onnx_op_type]


def onnx_case(rng: random.Random, bases: dict) -> bytes:
    model = type(bases["eccv16"])()
    model.CopyFrom(bases[rng.choice(FAMILIES)])
    for _ in range(rng.choice([1, 1, 2, 3])):
        _mutate(rng.choice(ONNX_MUTATIONS), rng, model)
    data = model.SerializeToString()
    return _flip_bytes(rng, data) if rng.random() < 0.1 else data


# ---------------------------------------------------------------- running


def _child(model: str, photo: str, engine: str, log: str, memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(handle, 1)
    os.dup2(handle, 2)
    code = 70
    try:
        from cvstyle.cli import main

        code = main(["apply", "-m", model, photo, "-o", str(Path(log).with_suffix(".png")), "--engine", engine])
    except BaseException:  # what the CLI let through: the fuzzer's finding
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 70)


def classify(exitcode: int | None, output: str) -> str:
    if exitcode is None:
        return "hang"
    lines = output.strip().splitlines()
    if exitcode == 0:
        return "ran"
    if 1 <= exitcode <= 4 and len(lines) == 1 and lines[0].startswith("cvstyle: error: "):
        return "refused"
    if any(sign in output for sign in MEMORY_SIGNS):
        return "memory"
    if exitcode < 0:
        return "signal"
    return "traceback" if "Traceback" in output else "noisy"


def _finish(process, log: Path) -> tuple[str, str]:
    output = log.read_text("utf-8", "replace") if log.exists() else ""
    return classify(process.exitcode, output), output


def campaign(fmt: str, cases: int, folder: Path, photo: Path, args, context) -> Counter:
    """Run ``cases`` mutated models of ``fmt``, ``args.jobs`` at a time; count outcomes."""
    bases = {family: build_checkpoint(family, seed=0) for family in FAMILIES}
    if fmt == "onnx":
        bases = {family: onnx_export.to_onnx(checkpoint) for family, checkpoint in bases.items()}
    make = t7_case if fmt == "t7" else onnx_case
    counts: Counter = Counter()
    running: list = []
    index = 0
    while index < cases or running:
        while index < cases and len(running) < args.jobs:
            rng = random.Random(f"{args.seed}-{fmt}-{index}")
            case = folder / f"{fmt}-{index}.{fmt}"
            case.write_bytes(make(rng, bases))
            engine = ("opencv", "onnxruntime")[index % 2]
            log = case.with_suffix(".log")
            process = context.Process(
                target=_child, args=(str(case), str(photo), engine, str(log), args.memory_mib << 20)
            )
            process.start()
            running.append((process, case, log, engine, time.monotonic()))
            index += 1
        time.sleep(0.02)
        for entry in list(running):
            process, case, log, engine, started = entry
            if process.is_alive() and time.monotonic() - started < args.timeout:
                continue
            if process.is_alive():
                process.kill()
                process.join()
                outcome, output = "hang", ""
            else:
                process.join()
                outcome, output = _finish(process, log)
            running.remove(entry)
            counts[outcome] += 1
            if outcome not in ACCEPTABLE:
                print(f"{case.name} ({engine}): {outcome}: {output.strip()[-300:]!r}", flush=True)
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / case.name).write_bytes(case.read_bytes())
            for leftover in folder.glob(case.stem + ".*"):
                leftover.unlink()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="cases per format (default 1000)")
    parser.add_argument("--format", choices=("t7", "onnx", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case (default 60)")
    parser.add_argument("--memory-mib", type=int, default=2048, help="address-space limit per case (default 2048)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="cases run at once (default: the CPU count)")
    parser.add_argument("--json", type=Path, help="write the counts to this file")
    parser.add_argument("--keep", type=Path, help="copy failing cases into this folder")
    args = parser.parse_args(argv)
    # The Torch7 writer recurses once per nesting level of the cases it is asked to write.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["cvstyle.cli", "cv2", "onnx", "onnxruntime"])
    formats = ("t7", "onnx") if args.format == "both" else (args.format,)
    results = {}
    with tempfile.TemporaryDirectory(prefix="cvstyle-fuzz-") as temporary:
        photo = Path(temporary) / "photo.png"
        pixels = np.random.default_rng(args.seed).integers(0, 256, (32, 48, 3), np.uint8)
        photo.write_bytes(cv2.imencode(".png", pixels)[1].tobytes())
        for fmt in formats:
            folder = Path(temporary) / fmt
            folder.mkdir()
            started = time.monotonic()
            counts = campaign(fmt, args.cases, folder, photo, args, context)
            results[fmt] = {outcome: counts[outcome] for outcome in OUTCOMES}
            results[fmt]["seconds"] = round(time.monotonic() - started)
            print(fmt, json.dumps(results[fmt]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    bad = sum(results[fmt][outcome] for fmt in results for outcome in OUTCOMES if outcome not in ACCEPTABLE)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
