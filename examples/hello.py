"""A small typed batch engram: the README example.

Run it locally (no cluster)::

    bubu run examples/hello.py --inputs '{"name": "Ada"}'
    bubu run examples/hello.py --inputs '{"name": "Ada"}' --config '{"greeting": "Hi"}'

In a StepRun pod, the container command is ``python hello.py``.
"""

from __future__ import annotations

import msgspec

import bubu


class Config(msgspec.Struct):
    """Engram configuration (the step's ``with`` block)."""

    greeting: str = "Hello"


class Inputs(msgspec.Struct):
    """Step inputs."""

    name: str


class Output(msgspec.Struct):
    """Step output (``status.output``)."""

    greeting: str


class HelloEngram(bubu.BatchEngram[Config, Inputs]):
    """Greets ``inputs.name`` with the configured greeting."""

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.config = config

    async def process(self, ctx: bubu.ExecutionContext, inputs: Inputs) -> bubu.Result:
        ctx.logger.info("greeting %s", inputs.name)
        return bubu.Result(Output(greeting=f"{self.config.greeting}, {inputs.name}!"))


if __name__ == "__main__":
    bubu.run(bubu.start_batch(HelloEngram()))
