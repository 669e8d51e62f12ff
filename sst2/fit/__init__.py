"""Training: batch sources, compiled steps, the loop and what it calls, one run."""
