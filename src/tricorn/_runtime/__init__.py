"""The runtime: the only code that owns sockets, tasks and time."""
