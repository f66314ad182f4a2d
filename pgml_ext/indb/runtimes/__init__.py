"""Runtimes that execute a model: a seam so a faster runtime can sit beside TensorFlow.

A runtime loads a SavedModel directory and runs one of its signatures on a batch:
``run(signature, {input name: ndarray}) -> {output name: ndarray}``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runtime(Protocol):
    name: str

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


RUNTIMES = ("litert", "tensorflow")
