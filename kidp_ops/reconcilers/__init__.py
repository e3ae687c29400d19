"""Reconcilers: each decides purely (functions of spec, observed state and now), then acts once."""
