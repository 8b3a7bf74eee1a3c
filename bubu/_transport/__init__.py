"""Streaming transport: the engram side of ``transport.v1`` (docs/contract/stream.md).

The only package (with ``bubu._gen`` and ``bubu.testkit``) that imports grpclib, protobuf and
protovalidate. ``codec`` converts between :class:`bubu.StreamMessage` and the generated messages,
``validate`` applies the ``buf.validate`` rules, ``errors`` translates grpclib failures, and the
session/binding/settings modules run the connector protocol.
"""
