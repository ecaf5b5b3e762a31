"""Ray Train entry points. Each module is runnable as `python -m train_jobs.<name> ...`."""
