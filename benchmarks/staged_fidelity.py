"""Exact tiled (staged) runs against untiled passes, on both CPU engines, at 4.3 MP.

    PYTHONPATH=. python benchmarks/staged_fidelity.py [--model PATH] [--reference]

Paints one 2403x1801 photo with the instance_norm fixture (or ``--model``) four ways:
ONNX Runtime and OpenVINO, each untiled and staged under a 1.5 GiB budget, and prints
the grey-level difference of every pair: whether two engines' staged results agree
with each other better than their untiled passes do. ``--reference`` also paints it
with the tests' float64 NumPy network (a few minutes, about 6 GB of memory) and
compares each result with that. docs/benchmarks.md, *Exact large photos*, has the
figures.
"""

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from harness import photo  # noqa: E402

from cvstyle import Stylizer, torch7  # noqa: E402
from cvstyle.testing import write_fixture_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import reference_net  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--reference", action="store_true", help="compare with the float64 reference too")
    args = parser.parse_args()
    image = photo((2403, 1801))
    painted = {}
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or write_fixture_model(Path(folder) / "instance_norm.t7", "instance_norm", seed=1)
        for engine in ("onnxruntime", "openvino"):
            painter = Stylizer(str(model), device="cpu", engine=engine)
            painted[f"{engine} untiled"] = painter.stylize(image, tile="off").astype(int)
            painted[f"{engine} staged"] = painter.stylize(image, tile="on", max_memory="1.5G").astype(int)
        if args.reference:
            tree = torch7.load(model)["model"]
            painted["float64 reference"] = np.rint(reference_net.stylize(tree, image)).astype(int)
    for first, second in itertools.combinations(painted, 2):
        difference = np.abs(painted[first] - painted[second])
        print(f"{first:20s} vs {second:20s} max {difference.max():3d}  mean {difference.mean():.4f}  "
              f"pixels over 1: {(difference > 1).sum()}")


if __name__ == "__main__":
    main()
