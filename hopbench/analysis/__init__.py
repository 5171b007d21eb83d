"""Analysis: stability of fixed points, energy descent (Lyapunov check), dead neurons, the measurements of
DESIGN §5 and training."""
