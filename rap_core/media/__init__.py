"""Media: inputs normalised for the model (normalise.py) and container files read and written (container.py)."""
