"""A dependency of python-hello, built into a wheel and installed in the build stage."""

import platform


def greeting() -> str:
    return f"hello from StageX (python {platform.python_version()})"
