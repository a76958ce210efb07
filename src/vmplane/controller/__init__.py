"""The controllers: the VM controller turns VMs into VMIs and rolls changes out to them."""
