"""The build backend: maturin's, with the build chosen by the interpreter.

CPython 3.11 and later get the abi3 wheel (one wheel for all of them). The
stable ABI has no buffer protocol before 3.11, and a frame exporting its
record in place is the module's point, so CPython 3.9 and 3.10 get a wheel
for their own version: the crate's `abi3` feature is turned off for them
through maturin's `MATURIN_PEP517_ARGS`. The interpreter is the one pip
runs the backend with, the one the wheel is for.
"""

import os
import sys

if sys.version_info < (3, 11):
    _own_version = "--no-default-features --features extension-module"
    os.environ["MATURIN_PEP517_ARGS"] = " ".join(
        part for part in (os.environ.get("MATURIN_PEP517_ARGS", ""), _own_version) if part
    )

from maturin import (  # noqa: E402  (the arguments above are read when these run)
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]
