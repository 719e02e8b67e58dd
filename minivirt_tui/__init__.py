"""The front ends of minivirt: the ``miv`` command (click + rich) and the ``miv tui`` dashboard."""
