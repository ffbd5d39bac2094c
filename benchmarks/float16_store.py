"""Would float16 activation maps make staged runs faster? The store's two copies, as
`cvstyle.tiling.activations.ActivationStore` makes them (channel by channel: a read with
the next stage's affine map, a write), with the maps in float32 and in float16.

    .venv/bin/python benchmarks/float16_store.py
"""

from __future__ import annotations

import time

import numpy as np

CHANNELS, SIDE, TILE = 128, 1000, 500  # a 1000x1000 map of 128 channels, 500x500 tiles


def best_of(work, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    maps = {"float32": rng.random((CHANNELS, SIDE, SIDE), np.float32)}
    maps["float16"] = maps["float32"].astype(np.float16)
    tile = np.empty((CHANNELS, TILE, TILE), np.float32)
    rows, cols = slice(100, 100 + TILE), slice(200, 200 + TILE)
    gain, offset = np.float32(1.5), np.float32(0.3)
    for dtype, whole in maps.items():

        def read() -> None:
            for channel in range(CHANNELS):
                np.multiply(whole[channel, rows, cols], gain, out=tile[channel])
                tile[channel] += offset

        def write() -> None:
            for channel in range(CHANNELS):
                whole[channel, rows, cols] = tile[channel]

        megabytes = CHANNELS * TILE * TILE * 4 / 1e6
        print(f"{dtype} maps: read {best_of(read) * 1e3:.0f} ms, write {best_of(write) * 1e3:.0f} ms "
              f"for a {CHANNELS}x{TILE}x{TILE} float32 tile ({megabytes:.0f} MB)")


if __name__ == "__main__":
    main()
