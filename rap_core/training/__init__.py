"""Training RAP: static-dynamic windows, the flow-matching + face + motion loss, the loop."""
