"""PixelBatch's local stack: template.yaml on moto in server mode, handlers in process.

Run it with ``python -m devstack``. Modules: :mod:`devstack.template` (the resolved template),
:mod:`devstack.handlers` (in-process handlers), :mod:`devstack.seam` (the moto patch),
:mod:`devstack.stack` (moto and the resources), :mod:`devstack.gateway` (the HTTP API).
"""
