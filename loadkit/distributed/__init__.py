"""Runs bigger than one process, on Locust's master/worker runners.

fleet.py (the master's side, in the loadkit process), relay.py (the Locust
processes: the channel only), shard.py (a worker's engine, never beside
Locust), wire.py (what crosses, pure). Nothing is imported here: the relay
must import Locust (and its gevent patches) before anything else.
"""

__all__: list[str] = []
