"""Command line: ``python -m loadkit.sim [--port 0] [--itl-ms 10] ...``.

Prints exactly one line, ``LOADKIT_SIM_LISTENING http://HOST:PORT``, once the
socket is bound (so a parent process can read the ephemeral port), then
serves until SIGTERM or SIGINT and exits 0.  With ``--grpc-port`` (KServe v2
over gRPC, ``kserve_grpc.py``) a line ``LOADKIT_SIM_GRPC HOST:PORT`` comes
just before it.

Configuration, lowest precedence first: ``--preset NAME`` (or ``preset:`` in
the file), ``--config FILE`` (a YAML or JSON mapping of SimConfig fields,
``faults`` as a list), then one flag per field.  ``--faults`` takes the
schedule as JSON text.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .config import SimConfig
from .faults import KINDS
from .presets import PRESETS
from .server import serve

PROG = "python -m loadkit.sim"
# Field kind -> flag parser; `faults` stays text, parsed (JSON) by SimConfig.
_TYPES: dict[str, Callable[[str], Any]] = {"float": float, "int": int, "str": str,
                                           "faults": str}


def _parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="OpenAI-compatible inference-server simulator.",
        epilog=f"presets: {', '.join(PRESETS)}; fault kinds: {', '.join(KINDS)} "
               "(schedule format: loadkit/sim/faults.py)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=_port, default=0,
                   help="port to bind; 0 picks a free one (default: %(default)s)")
    p.add_argument("--grpc-port", type=_port, default=None,
                   help="also serve KServe v2 over gRPC on this port; 0 picks a free one "
                        "(needs grpcio and tritonclient; default: no gRPC)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow binding a non-loopback address")
    p.add_argument("--config", metavar="FILE",
                   help="YAML or JSON mapping of SimConfig fields; flags override it")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="start from a named configuration; the file and flags override it")
    # One flag per SimConfig field, so new knobs appear here automatically.
    for f in dataclasses.fields(SimConfig):
        kind = f.metadata["kind"]
        shown = "none" if kind == "faults" or f.default == "" else f.default
        p.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, default=None,
            type=_TYPES[kind], metavar="JSON" if kind == "faults" else f.name.upper(),
            help=f"{f.metadata.get('help', '')} (default: {shown})")
    return p


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # any other host name: cannot vouch for it
        return False


def _build_config(args: argparse.Namespace) -> SimConfig:
    values: dict[str, Any] = {}
    if args.config:
        import yaml  # optional dependency, only needed for --config

        with open(args.config, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a YAML mapping")
        values.update(loaded or {})
    if args.preset is not None:
        values["preset"] = args.preset
    for f in dataclasses.fields(SimConfig):
        if getattr(args, f.name) is not None:
            values[f.name] = getattr(args, f.name)
    return SimConfig.from_mapping(values)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None  # the stdlib loop works, with more per-event overhead
    return uvloop.new_event_loop


async def _run(config: SimConfig, host: str, port: int, grpc_port: int | None = None,
               prog: str = PROG) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread / no signal support: caller cancels us
    try:
        try:
            if grpc_port is not None:
                _need_grpc()
            runner, actual_port = await serve(config, host, port)
        except ImportError as exc:
            print(f"{prog}: --grpc-port needs grpcio and tritonclient (pip install "
                  f"'loadkit[grpc]'): {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"{prog}: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return 2  # a flag's value (a port in use): bad input, as loadkit's exit 2
        grpc_server = None
        try:
            shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
            if grpc_port is not None:  # before the HTTP line: a parent reads both
                try:
                    grpc_server, bound = await _serve_grpc(runner, host, grpc_port)
                except (OSError, RuntimeError) as exc:
                    print(f"{prog}: cannot listen for gRPC on {host}:{grpc_port}: {exc}",
                          file=sys.stderr)
                    return 2
                print(f"{GRPC_LINE} {shown}:{bound}", flush=True)
            print(f"LOADKIT_SIM_LISTENING http://{shown}:{actual_port}", flush=True)
            await stop.wait()
        finally:
            if grpc_server is not None:
                await grpc_server.stop(0.2)
            await runner.cleanup()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return 0


GRPC_LINE = "LOADKIT_SIM_GRPC"


def _need_grpc() -> None:
    import grpc  # noqa: F401
    from tritonclient.grpc import service_pb2_grpc  # noqa: F401


async def _serve_grpc(runner: Any, host: str, port: int) -> tuple[Any, int]:
    """The KServe v2 gRPC front (kserve_grpc.py) on the HTTP server's context."""
    from .kserve_grpc import serve_grpc
    from .server import SIMULATOR_KEY

    sim = runner.app[SIMULATOR_KEY]
    return await serve_grpc(lambda: sim.context, host, port)


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run the simulator CLI (named `prog` in its messages); returns the
    process exit status: 0, or 2 for a bad flag, file or port."""
    try:
        args = _parser(prog).parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    if not args.allow_remote and not _is_loopback(args.host):
        print(f"{prog}: refusing to listen on non-loopback host {args.host!r}; "
              "pass --allow-remote to expose the simulator on the network",
              file=sys.stderr)
        return 2
    try:
        config = _build_config(args)
    except (ValueError, OSError) as exc:
        print(f"{prog}: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. yaml.YAMLError, without importing yaml here
        print(f"{prog}: cannot read --config: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_run(config, args.host, args.port, args.grpc_port, prog))
    except KeyboardInterrupt:  # SIGINT before our handler was installed
        return 0


if __name__ == "__main__":
    sys.exit(main())
