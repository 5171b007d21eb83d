"""Analysis: stability of fixed points, energy descent (Lyapunov check), dead neurons, the measurements of
docs/design.md §5 and training."""
