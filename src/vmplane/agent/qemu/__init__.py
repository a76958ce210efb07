"""QEMU driver: runs machines as QEMU processes and hotplugs them over QMP."""
