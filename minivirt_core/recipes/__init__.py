"""Recipes: YAML files, in the spirit of GitHub Actions workflows, that build images.

:func:`load_recipe` reads and validates one (every error names the file, line, step and
key); :class:`~minivirt_core.recipes.build.Builder` runs it and reports progress as
events.
"""

from .schema import Recipe, load_recipe

__all__ = ["Recipe", "load_recipe"]
