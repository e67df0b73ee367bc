"""Results into claims, tables and figures: statistics, the paper's numbers, claim machinery, plot style."""
