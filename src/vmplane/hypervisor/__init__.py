"""Machine drivers: the Hypervisor protocol the node agent uses, QEMU, the simulated one, and who
QEMU runs as."""
