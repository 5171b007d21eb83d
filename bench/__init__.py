"""hopbench benchmark: run with `make bench` or `python bench/run.py`."""
