"""Requests and checks shared by the web API tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import httpx
import numpy as np

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CHELSEA = (SAMPLES / "chelsea.png").read_bytes()  # 451 x 300


def stylize(client: httpx.Client, image: bytes = CHELSEA, name: str = "chelsea.png", **fields):
    form = {key: str(value) for key, value in {"model": "test/wave", **fields}.items()}
    return client.post("/api/stylize", files={"image": (name, image, "image/png")}, data=form)


def decoded(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def detail(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["detail"]
    assert isinstance(message, str) and "\n" not in message
    return message
