"""The Ray Data actors: each builds its Stylizers once, then stylizes batch after batch."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import batch
from ..engines.streams import in_order, throughput_streams
from ..errors import CvstyleError
from ..imageio import Picture, read_image, write_image
from .settings import ModelSettings
from .sources import is_uri, read_uri


class FileStylizer:
    """A Ray Data actor: builds the Stylizers once, then reads, stylizes and writes rows.

    It works in the driver's folder where its node sees it (a shared file system, or
    the driver's own machine), so that relative names and messages are as ``apply``'s;
    elsewhere names are taken relative to that folder, i.e. as absolute paths."""

    def __init__(self, settings: ModelSettings, options: dict, quality: int, max_pixels: int | None, folder: str):
        self.root = "" if os.path.isdir(folder) else folder
        if not self.root:
            os.chdir(folder)
        self.options, self.quality, self.max_pixels = options, quality, max_pixels
        try:  # an actor paints many photos: as many at once as its Stylizers have streams
            self.stylizers, self.error = settings.stylizers(streams=throughput_streams()), None
        except CvstyleError as error:  # e.g. a model missing on this node: every row says so
            self.stylizers, self.error = [], error
        self.painters = max((stylizer.streams for stylizer in self.stylizers), default=1)

    def _path(self, name: str) -> str:
        return name if is_uri(name) else os.path.join(self.root, name)

    def _read(self, name: str) -> Picture | CvstyleError:
        try:
            if is_uri(name):
                return read_uri(name, self.max_pixels)
            return read_image(self._path(name), self.max_pixels)
        except CvstyleError as error:
            return error

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list]:
        results: dict[str, list] = {"index": [], "target": [], "error": [], "exit_code": []}

        def record(index: int, target: str, error: CvstyleError | None) -> None:
            results["index"].append(int(index))
            results["target"].append(target)
            results["error"].append("" if error is None else str(error))
            results["exit_code"].append(0 if error is None else error.exit_code)

        with (
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="cvstyle-io") as pool,
            ThreadPoolExecutor(max_workers=self.painters, thread_name_prefix="cvstyle-paint") as painting,
        ):
            reads = {name: pool.submit(self._read, name) for name in dict.fromkeys(rows["name"])}
            writes = []
            columns = ("index", "name", "model", "target", "auto_extension")
            decoded = ((row, self.error or reads[row[1]].result()) for row in zip(*(rows[c] for c in columns)))
            for (index, name, model, target, auto), painted in batch.paint_in_order(
                decoded, lambda row: self.stylizers[row[2]], self.options, painting, self.painters,
            ):
                if isinstance(painted, CvstyleError):
                    record(index, target, painted)
                    continue
                job = batch.Job(Path(name), self.stylizers[model], Path(target), bool(auto))
                target = str(job.resolve_target(painted.alpha is not None))
                writes.append((index, target, pool.submit(write_image, self._path(target), painted, self.quality)))
            for index, target, write in writes:
                try:
                    write.result()
                    record(index, target, None)
                except CvstyleError as error:
                    record(index, target, error)
        return results


class ArrayStylizer:
    """A Ray Data actor for :func:`stylize_dataset`: stylizes an image column in place."""

    def __init__(self, settings: ModelSettings, options: dict, column: str, rgb: bool):
        [self.stylizer] = settings.stylizers(streams=throughput_streams())
        self.options, self.column, self.rgb = options, column, rgb

    def _paint(self, image) -> np.ndarray:
        image = _swap_red_blue(np.asarray(image)) if self.rgb else np.asarray(image)
        result = self.stylizer.stylize(image, **self.options)  # refuses what is not uint8
        return _swap_red_blue(result) if self.rgb else result

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        painters = self.stylizer.streams
        with ThreadPoolExecutor(max_workers=painters, thread_name_prefix="cvstyle-paint") as painting:
            started = in_order(rows[self.column], lambda image: painting.submit(self._paint, image), painters)
            painted = [future.result() for _, future in started]
        if len({image.shape for image in painted}) == 1:
            rows[self.column] = np.stack(painted)  # one tensor column
            return rows
        column = np.empty(len(painted), dtype=object)  # a column of arrays of several shapes
        for index, image in enumerate(painted):
            column[index] = image
        rows[self.column] = column
        return rows


def _swap_red_blue(image: np.ndarray) -> np.ndarray:
    """RGB(A) <-> BGR(A); a grey image as it is."""
    return image[:, :, [2, 1, 0, 3][: image.shape[2]]] if image.ndim == 3 else image
