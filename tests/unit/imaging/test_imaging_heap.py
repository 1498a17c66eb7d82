"""The item worker's heap settings: an image's buffers reuse the pages freed by the last one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pixelbatch.imaging import heap

# Buffers of the sizes one 12 MP photo goes through (luma, a 2560 px RGB frame, libjpeg's
# luma coefficients), allocated, written and freed in turn, for three images: the minor page
# faults of the second and third images are counted.
_IMAGES = """
import resource, sys
from pixelbatch.imaging.heap import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def image():
    for size in (12_192_768, 14_745_600, 24_385_536):
        buffer = bytearray(size)  # written through: every page is touched
        del buffer
image()
before = faults()
image()
image()
print(faults() - before)
"""
_IMAGE_PAGES = (12_192_768 + 14_745_600 + 24_385_536) // 4096


def _later_image_faults(setting: str) -> int:
    core = Path(heap.__file__).parents[2]  # the directory that holds pixelbatch
    ran = subprocess.run([sys.executable, "-c", _IMAGES, setting], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(core)})
    return int(ran.stdout)


def test_later_images_reuse_the_pages_of_the_first() -> None:
    kept, default = _later_image_faults("kept"), _later_image_faults("default")
    # with glibc's defaults the heap faults in about an image's worth again (its thresholds
    # move as blocks are freed); kept, the buffers reuse the first image's pages
    assert kept < _IMAGE_PAGES // 100 < _IMAGE_PAGES // 4 < default


def test_the_threshold_is_one_the_lambda_runtime_accepts() -> None:
    # Amazon Linux 2's glibc 2.26 refuses more than 32 MB; newer ones (this machine's) accept
    # it, and the setting would hold here and silently not on AWS.
    assert heap.MMAP_THRESHOLD <= 32 * 1024 * 1024
