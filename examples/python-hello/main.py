"""python-hello prints a greeting made by its dependency: enough to show that
packages installed in the pallet-python stage run on base-python."""

from greeting import greeting

print(greeting())
