"""`loadkit sim`: serve the embedded inference-server simulator.

Its flags belong to the simulator (`python -m loadkit.sim`), which stays free
of loadkit's other modules; they are passed through untouched.
"""

from __future__ import annotations

import click


@click.command("sim", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def sim_command(ctx: click.Context) -> int:
    """Serve the OpenAI-compatible simulator (--port N, --ttft-ms, --itl-ms, ...; see --help)."""
    from loadkit.sim.__main__ import main as sim_main  # lazy: server code

    return sim_main(list(ctx.args), prog="loadkit sim")
