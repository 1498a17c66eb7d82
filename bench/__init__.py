"""Benchmarks of PixelBatch on 12-megapixel photos: ``python -m bench`` (or ``make bench``).

Every benchmark prints a ratio of two measurements taken side by side in the same run
(interleaved, repeated; median and spread), never an absolute time to compare across machines.
A full run rewrites docs/performance.md.

The core package ships as a Lambda layer (``layers/core``); like ``python -m devstack``, the
bench puts the template's layers on ``sys.path`` the way Lambda mounts them under /opt/python.
"""

from devstack.handlers import REPO_TEMPLATE, ensure_layers_importable
from devstack.template import load_template

REPO = REPO_TEMPLATE.parent

ensure_layers_importable(load_template(REPO_TEMPLATE))
