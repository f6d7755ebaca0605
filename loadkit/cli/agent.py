"""`loadkit agent`: serve this machine's NVML samples to a remote loadkit run.

Run it beside the inference server; point the workload at it with
`telemetry: {agent: http://HOST:PORT, agent_token: ${LOADKIT_AGENT_TOKEN}}`.
It listens on loopback unless a token is set (then requests without it get
401). Prints `LOADKIT_AGENT_LISTENING URL` once ready; stops on Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import signal
import threading

import click

from loadkit.cli.params import duration


@click.command("agent")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; anything but loopback needs a token")
@click.option("--port", default=9400, show_default=True, type=click.IntRange(0, 65535),
              help="port (0: any free one)")
@click.option("--interval", default="250ms", show_default=True, callback=duration(0.01, 60.0, zero=True),
              help="NVML sampling period")
@click.option("--token", envvar="LOADKIT_AGENT_TOKEN", default=None, show_envvar=True,
              help="bearer token every request must carry (prefer the environment "
                   "variable: a flag shows in `ps`)")
def agent_command(host: str, port: int, interval: float, token: str | None) -> int:
    """Serve this machine's GPU samples (NVML) as JSON and Prometheus text."""
    # lazy: pynvml, http.server
    from loadkit.telemetry.agent_server import Agent, AgentServer

    server = AgentServer(Agent(interval), host, port, token or None)  # InputError: exit 2
    server.start()
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        agent = server.agent
        if agent.status != "ok":
            click.echo(f"loadkit agent: GPU telemetry unavailable: {agent.reason} "
                       "(serving that status)", err=True)
        click.echo(f"LOADKIT_AGENT_LISTENING {server.url}")
        while not done.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
    return 0
