"""The operations: each module declares only its own options, a job value, a tile function and its sink."""
