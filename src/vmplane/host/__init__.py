"""This host's files for guests: volumes, images, cloud-init seeds, and where each lives."""
