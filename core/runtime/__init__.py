"""Running an operation: the tile runner, executors, the work folder, the engine process."""
