"""Small test images made on the fly: tests never read the real CT data."""

import io
import zlib
from struct import pack

import numpy as np
from PIL import Image

from ml_core.phantoms import STONE_RADIUS, draw_phantom


def phantom_pixels(*, size: int = 64, with_stone: bool = False, seed: int = 0) -> np.ndarray:
    return draw_phantom(np.random.default_rng(seed), size=size, with_stone=with_stone)


def encode(image: Image.Image, image_format: str = "PNG", **options) -> bytes:
    output = io.BytesIO()
    image.save(output, format=image_format, **options)
    return output.getvalue()


def phantom_png(*, size: int = 64, with_stone: bool = False, seed: int = 0) -> bytes:
    pixels = phantom_pixels(size=size, with_stone=with_stone, seed=seed)
    return encode(Image.fromarray((pixels * 255).astype(np.uint8), mode="L"))


def phantom_jpeg(*, size: int = 64, seed: int = 0) -> bytes:
    pixels = phantom_pixels(size=size, seed=seed)
    grey = Image.fromarray((pixels * 255).astype(np.uint8), mode="L")
    return encode(grey.convert("RGB"), "JPEG", quality=95)


def png_bomb(side: int) -> bytes:
    """A valid greyscale PNG of side x side black pixels: tiny on disk, huge decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return pack(">I", len(data)) + kind + data + pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def write_phantom_folder(
    root, *, per_class: int, size: int = 48, seed: int = 0, stone_radius=STONE_RADIUS
) -> None:
    """root/normal/ and root/stone/ with numbered phantom PNGs, like the kidney-ct layout."""
    from pathlib import Path

    rng = np.random.default_rng(seed)
    for label in ("normal", "stone"):
        folder = Path(root) / label
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(1, per_class + 1):
            pixels = draw_phantom(
                rng, size=size, with_stone=label == "stone", stone_radius=stone_radius
            )
            image = Image.fromarray((pixels * 255).astype(np.uint8), mode="L")
            (folder / f"{label.title()}- ({number}).png").write_bytes(encode(image))
