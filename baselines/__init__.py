"""Baselines that ovbench's methods are compared against, and simple reference predictors."""
