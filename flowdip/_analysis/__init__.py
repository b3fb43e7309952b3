"""What runs and sweeps show: sharpness, flow-against-descent comparisons and convergence
orders, fits of rates and phase transitions, the disagreement of two sweeps, and which
measurements the two-layer net can reach at all."""
