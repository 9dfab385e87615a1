"""Synthetic kidney CT phantoms, drawn from scratch, so a fresh install can train a placeholder
model with no data and no network. They are not anatomy: an elliptical body, two kidneys and,
for the `stone` class, a small bright focus inside one kidney."""

import numpy as np

PHANTOM_CLASSES = ["normal", "stone"]


STONE_RADIUS = (0.015, 0.03)  # of the image side


def draw_phantom(
    rng: np.random.Generator,
    *,
    size: int,
    with_stone: bool,
    stone_radius: tuple[float, float] = STONE_RADIUS,
) -> np.ndarray:
    """One (size, size) float32 intensity image in [0, 1]; larger stones (`stone_radius`)
    make a task a tiny model at a small input size learns at once."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.zeros((size, size), dtype=np.float32)

    center_row = 0.5 + rng.uniform(-0.04, 0.04)
    body = _ellipse(rows, cols, center_row, 0.5, rng.uniform(0.30, 0.36), rng.uniform(0.40, 0.46))
    image[body] = rng.uniform(0.30, 0.40)

    kidneys = []
    for side in (-1, 1):
        kidney_row = center_row + rng.uniform(0.02, 0.08)
        kidney_col = 0.5 + side * rng.uniform(0.16, 0.22)
        half_height, half_width = rng.uniform(0.07, 0.10), rng.uniform(0.04, 0.06)
        image[_ellipse(rows, cols, kidney_row, kidney_col, half_height, half_width)] = rng.uniform(
            0.50, 0.60
        )
        kidneys.append((kidney_row, kidney_col, half_height, half_width))

    if with_stone:
        kidney_row, kidney_col, half_height, half_width = kidneys[rng.integers(2)]
        stone_row = kidney_row + rng.uniform(-0.5, 0.5) * half_height
        stone_col = kidney_col + rng.uniform(-0.5, 0.5) * half_width
        radius = rng.uniform(*stone_radius)
        image[_ellipse(rows, cols, stone_row, stone_col, radius, radius)] = rng.uniform(0.9, 1.0)

    image += rng.normal(0.0, 0.03, size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def draw_phantom_set(
    count: int, *, size: int, seed: int, stone_radius: tuple[float, float] = STONE_RADIUS
) -> tuple[list[np.ndarray], np.ndarray]:
    """`count` phantoms, half with a stone, and their class indices into PHANTOM_CLASSES."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    rng.shuffle(labels)
    images = [
        draw_phantom(rng, size=size, with_stone=bool(label), stone_radius=stone_radius)
        for label in labels
    ]
    return images, labels


def _ellipse(rows, cols, center_row, center_col, half_height, half_width) -> np.ndarray:
    return ((rows - center_row) / half_height) ** 2 + ((cols - center_col) / half_width) ** 2 <= 1
