"""Level-triggered reconcile machinery shared by the controllers and the node agent."""
