"""Training: shared loop utilities, mean teacher (phases a, c), I2I (phase b), EMA, schedules."""
