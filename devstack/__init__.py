"""PixelBatch's local stack: template.yaml on moto in server mode, handlers in process.

Run it with ``python -m devstack``. Modules: :mod:`devstack.template` (the resolved template,
over :mod:`devstack.cfn`), :mod:`devstack.handlers` (in-process handlers and their context),
:mod:`devstack.seam` (the moto Lambda patch), :mod:`devstack.stack` (moto and the resources,
via :mod:`devstack.resources`), :mod:`devstack.gateway` (the HTTP API, with
:mod:`devstack.apigw` and :mod:`devstack.auth`), :mod:`devstack.scheduler` (Schedule events).
:mod:`devstack.sfn_fix` and :mod:`devstack.dynamodb_lock` work around moto 5.2.1 defects.
"""
