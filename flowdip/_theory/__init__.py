"""Theory held against runs: certificates (`results`, `bounds`, `certificate`), recovery
bounds, certified widths over a grid (`overparam`)."""
