"""The worker process: RQ jobs that turn Graph notifications into PBX profiles."""
