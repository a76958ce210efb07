"""The scheduler: binds pending VMIs to nodes, through the API like every controller."""
