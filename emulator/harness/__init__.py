"""What the tests and the benchmarks share to run the bridge for real on this machine.

Private servers on free loopback ports (Redis, any ASGI app under uvicorn), the bridge's
processes, and the factory that wires a whole bridge to the Graph emulator. The bridge's
own packages never import it.
"""
