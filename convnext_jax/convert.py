"""Entry point: python -m convnext_jax.convert SRC DST (see `convnext_jax.weights.convert`)."""

import sys

from convnext_jax.weights.convert import main

if __name__ == "__main__":
    sys.exit(main())
