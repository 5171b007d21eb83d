"""hopbench benchmark (issue 5): run with `make bench` or `python bench/run.py`."""
