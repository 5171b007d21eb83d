"""Mathematics: Lagrangians (activations), weights and storage rules, pattern sets, models (vector field +
energy) and the system that composes them."""
