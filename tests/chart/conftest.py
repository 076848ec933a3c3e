"""Lets the chart tests import chartlib (and the cluster fixtures) from this directory."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
