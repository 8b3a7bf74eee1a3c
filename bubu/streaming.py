"""Helpers for streaming engrams: ``bubu.streaming``.

Light to import (no grpclib, no protobuf): the runtime itself loads when an entry point runs.

* :func:`concurrently` - process inbound messages with bounded concurrency, ``done()`` kept
  correct;
* :class:`Sender` - the ``out`` of ``async def stream(self, inbound, out)`` engrams;
* :class:`ControlDirective` - what ``on_control(self, directive)`` receives and returns;
* :func:`trace_context` - the W3C trace context a message carries, as an OpenTelemetry context.
"""

from __future__ import annotations

from bubu._streaming import ControlDirective, Sender, concurrently, trace_context

__all__ = ["ControlDirective", "Sender", "concurrently", "trace_context"]
