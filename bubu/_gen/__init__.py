"""Generated protobuf and grpclib code for bubu. Do not edit.

Regenerate from protos/ with ``python scripts/gen_protos.py`` (``nox -s protos``);
``--check`` fails when this tree differs from what protoc produces.
"""
