"""The Ray Data actors: each builds its Stylizers once, then stylizes batch after batch."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import batch
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
        try:
            self.stylizers, self.error = settings.stylizers(), None
        except CvstyleError as error:  # e.g. a model missing on this node: every row says so
            self.stylizers, self.error = [], error

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

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cvstyle-io") as pool:
            reads = {name: pool.submit(self._read, name) for name in dict.fromkeys(rows["name"])}
            writes = []
            for index, name, model, target, auto in zip(
                rows["index"], rows["name"], rows["model"], rows["target"], rows["auto_extension"]
            ):
                picture = self.error or reads[name].result()
                if isinstance(picture, CvstyleError):
                    record(index, target, picture)
                    continue
                try:
                    result = batch.stylize_picture(self.stylizers[model], picture, self.options)
                except CvstyleError as error:
                    record(index, target, error)
                    continue
                job = batch.Job(Path(name), self.stylizers[model], Path(target), bool(auto))
                target = str(job.resolve_target(picture.alpha is not None))
                writes.append((index, target, pool.submit(write_image, self._path(target), result, self.quality)))
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
        [self.stylizer] = settings.stylizers()
        self.options, self.column, self.rgb = options, column, rgb

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        painted = []
        for image in rows[self.column]:
            image = _swap_red_blue(np.asarray(image)) if self.rgb else np.asarray(image)
            result = self.stylizer.stylize(image, **self.options)  # refuses what is not uint8
            painted.append(_swap_red_blue(result) if self.rgb else result)
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
