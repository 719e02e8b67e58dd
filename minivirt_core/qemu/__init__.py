"""Running QEMU: the command line, the detached process, and its QMP monitor."""
