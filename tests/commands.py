"""Management commands as the tests run them: in process, output captured."""

import io

from django.core.management import call_command

# A real but tiny training: a head on a 32 px VGG16, a few epochs.
TINY_TRAINING = [
    "--mode", "head", "--epochs", "3", "--input-size", "32", "--batch-size", "16",
    "--learning-rate", "0.001", "--no-augmentation",
]  # fmt: skip


def run(*arguments) -> str:
    """Run a management command; return what it wrote to stdout."""
    output = io.StringIO()
    call_command(*arguments, stdout=output, stderr=io.StringIO())
    return output.getvalue()
