"""Schemathesis hooks (loaded by schemathesis.toml): real slices for upload bodies. The schema
says an upload's file is a PNG, JPEG or DICOM image, which JSON Schema cannot describe, so
Schemathesis would otherwise send random bytes, which the service rightly refuses (415)."""

import sys
from pathlib import Path

import schemathesis
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.images import phantom_jpeg, phantom_png

SIDES = st.integers(min_value=32, max_value=160)
SEEDS = st.integers(min_value=0, max_value=2**31 - 1)

schemathesis.openapi.media_type(
    "image/png", st.builds(phantom_png, size=SIDES, with_stone=st.booleans(), seed=SEEDS)
)
schemathesis.openapi.media_type("image/jpeg", st.builds(phantom_jpeg, size=SIDES, seed=SEEDS))
