"""The asyncio kit: shutdown, backoff and task hygiene.

Imports nothing from ``bubu`` except ``bubu.errors``.
"""
