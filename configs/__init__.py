"""Training and study recipes (`get_config(arg)` files) and what they share (`common.py`)."""
