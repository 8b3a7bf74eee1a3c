"""Storage: references in payloads, offload of large payloads, blobs (docs/contract/storage.md).

The API the lifecycles (batch, streaming, impulse, triggers) call; docs/storage.md has the
behaviour in prose.

Build a manager
    ``StorageManager.from_env(env, kube=client)`` for a run (``env.storage`` None: disabled),
    or ``shared.manager_for(env, kube=client)`` for the process-wide one per configuration.
    Providers: ``file`` (``store.FileStore``) and ``s3`` (``s3.S3Store``, the ``bubu[s3]``
    extra, imported only when an s3 store is built).

Inputs and config (hydrate)
    ``await manager.hydrate(data)`` replaces ``$bubuStorageRef`` (with ``$bubuStoragePath``
    selectors), ``$bubuConfigMapRef`` and ``$bubuSecretRef``;
    ``hydrate_storage_refs_only`` leaves the kube refs alone.

Outputs and trigger inputs (dehydrate)
    ``await manager.dehydrate(output, namespaced_key(ns, step_run), schema=...,
    schema_version=...)`` for a StepRun output (prefix ``outputs``);
    ``await manager.dehydrate_inputs(inputs, namespaced_key(ns, storage_key), schema=...,
    schema_version=...)`` for StoryTrigger inputs
    (prefix ``inputs``, whole-input fallback ``input.json``); ``input_offload(manager)`` is the
    ``StoryTriggers(offload=...)`` seam of ``bubu._triggers``. With storage disabled both raise
    ``StorageDisabledError`` above ``BUBU_MAX_INLINE_SIZE`` and return the data otherwise.

Blobs and media
    ``write_blob``/``read_blob``/``open_blob``/``list``/``delete`` on the manager;
    ``media.maybe_offload_blob``/``media.read_blob`` for ``StorageReference`` values (the public
    ``bubu.offload_blob``/``bubu.read_blob`` in ``bubu._blobs`` use the run's manager);
    ``offload_value`` stores one value whole (what the testkit's ``LocalStorage.put`` uses).

Who calls it
    ``bubu._payloads`` (the stages of every run: hydrate inputs/config, offload outputs, only
    when a payload needs it), ``bubu._triggers`` (trigger inputs), ``bubu._logs`` and
    ``bubu._blobs``.

Logs
    ``bubu._logs`` (a layer above, it needs the run scope) publishes logs through a manager.

Pure reference helpers (no I/O, importable from any layer, e.g. the template evaluator) live
in ``bubu._runtime.refs``; Go-exact JSON bytes in ``bubu._runtime.gojson``.

Every failure is a ``bubu.errors.StorageError`` subclass naming the ref; every public
operation is bounded by ``BUBU_STORAGE_TIMEOUT`` (``StorageTimeoutError``).
"""

from bubu._storage.manager import StorageManager, input_offload, namespaced_key, open_store

__all__ = ["StorageManager", "input_offload", "namespaced_key", "open_store"]
